//! `VK_EXT_debug_utils` messengers: where validation messages and errors go. `TETHER_LOG`
//! (any value but `0`) also copies every message to stderr.

use std::ffi::CString;
use std::sync::{LazyLock, RwLock};

use ash::vk;

/// One registered messenger (from `vkCreateDebugUtilsMessengerEXT` or chained into
/// `VkInstanceCreateInfo`).
#[derive(Clone, Copy)]
pub struct Messenger {
    pub handle: u64,
    pub severities: vk::DebugUtilsMessageSeverityFlagsEXT,
    pub types: vk::DebugUtilsMessageTypeFlagsEXT,
    pub callback: vk::PFN_vkDebugUtilsMessengerCallbackEXT,
    pub user_data: usize,
}

impl Messenger {
    /// Reads a create-info; `None` when the callback is NULL.
    pub fn from_create_info(handle: u64, info: &vk::DebugUtilsMessengerCreateInfoEXT<'_>) -> Option<Messenger> {
        Some(Messenger {
            handle,
            severities: info.message_severity,
            types: info.message_type,
            callback: info.pfn_user_callback,
            user_data: info.p_user_data as usize,
        })
        .filter(|m| m.callback.is_some())
    }
}

static LOG_TO_STDERR: LazyLock<bool> =
    LazyLock::new(|| std::env::var_os("TETHER_LOG").is_some_and(|v| !v.is_empty() && v != "0"));

/// The messengers of one instance. Devices and queues keep an `Arc` to it so worker threads can
/// report too.
#[derive(Default)]
pub struct DebugReporter {
    messengers: RwLock<Vec<Messenger>>,
}

impl DebugReporter {
    pub fn add(&self, messenger: Messenger) {
        self.messengers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(messenger);
    }

    pub fn remove(&self, handle: u64) {
        self.messengers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|m| m.handle != handle);
    }

    /// A broken valid-usage rule: severity ERROR, type VALIDATION.
    pub fn validation(&self, vuid: &str, text: &str) {
        self.message(
            vk::DebugUtilsMessageSeverityFlagsEXT::ERROR,
            vk::DebugUtilsMessageTypeFlagsEXT::VALIDATION,
            vuid,
            text,
        );
    }

    /// A command failed for a reason the application should hear about (bad external handle,
    /// out of memory): severity WARNING, type GENERAL.
    pub fn failure(&self, id: &str, text: &str) {
        self.message(
            vk::DebugUtilsMessageSeverityFlagsEXT::WARNING,
            vk::DebugUtilsMessageTypeFlagsEXT::GENERAL,
            id,
            text,
        );
    }

    pub fn message(
        &self,
        severity: vk::DebugUtilsMessageSeverityFlagsEXT,
        types: vk::DebugUtilsMessageTypeFlagsEXT,
        id: &str,
        text: &str,
    ) {
        if *LOG_TO_STDERR {
            eprintln!("tether [{severity:?}] {id}: {text}");
        }
        let targets: Vec<Messenger> = self
            .messengers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|m| m.severities.contains(severity) && m.types.intersects(types))
            .copied()
            .collect();
        if targets.is_empty() {
            return;
        }
        let id_c = CString::new(id.replace('\0', " ")).unwrap_or_default();
        let text_c = CString::new(text.replace('\0', " ")).unwrap_or_default();
        let data = vk::DebugUtilsMessengerCallbackDataEXT::default()
            .message_id_name(&id_c)
            .message_id_number(message_id_number(id))
            .message(&text_c);
        for m in targets {
            if let Some(callback) = m.callback {
                // SAFETY: the application registered `callback` for this instance with its
                // `user_data`; `data` and its strings live across the call.
                unsafe { callback(severity, types, &data, m.user_data as *mut _) };
            }
        }
    }
}

/// A stable number for a message id (FNV-1a folded to 31 bits), as validation layers give one.
fn message_id_number(id: &str) -> i32 {
    let hash = id
        .bytes()
        .fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    (hash & 0x7fff_ffff) as i32
}
