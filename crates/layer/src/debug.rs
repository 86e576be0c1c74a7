//! Messages to the application: its `VK_EXT_debug_utils` messengers (the layer records the ones
//! created through `vkCreateDebugUtilsMessengerEXT` and calls them itself), and stderr with the
//! prefix `tether layer:` when `TETHER_LOG` is set (to anything but `0`).
//!
//! The layer calls the callbacks directly instead of `vkSubmitDebugUtilsMessageEXT`: the loader's
//! terminator for that takes the loader's (non-recursive) lock, which the loader already holds
//! while it calls the layer's `vkCreateDevice` or `vkCreateInstance`.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, RwLock};

use ash::vk;

/// One messenger the application created.
#[derive(Clone, Copy)]
struct Messenger {
    handle: vk::DebugUtilsMessengerEXT,
    severities: vk::DebugUtilsMessageSeverityFlagsEXT,
    types: vk::DebugUtilsMessageTypeFlagsEXT,
    callback: vk::PFN_vkDebugUtilsMessengerCallbackEXT,
    user_data: usize,
}

static LOG_TO_STDERR: LazyLock<bool> =
    LazyLock::new(|| std::env::var_os("TETHER_LOG").is_some_and(|v| !v.is_empty() && v != "0"));

/// Writes a line to stderr when `TETHER_LOG` is set.
pub fn log(text: &str) {
    if *LOG_TO_STDERR {
        eprintln!("tether layer: {text}");
    }
}

/// The messengers of one instance.
#[derive(Default)]
pub struct Reporter {
    messengers: RwLock<Vec<Messenger>>,
}

impl Reporter {
    pub fn add(&self, handle: vk::DebugUtilsMessengerEXT, info: &vk::DebugUtilsMessengerCreateInfoEXT<'_>) {
        if info.pfn_user_callback.is_none() {
            return;
        }
        self.messengers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Messenger {
                handle,
                severities: info.message_severity,
                types: info.message_type,
                callback: info.pfn_user_callback,
                user_data: info.p_user_data as usize,
            });
    }

    pub fn remove(&self, handle: vk::DebugUtilsMessengerEXT) {
        self.messengers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|m| m.handle != handle);
    }

    /// Sends a message to stderr (with `TETHER_LOG`) and to every messenger that wants it.
    pub fn message(
        &self,
        severity: vk::DebugUtilsMessageSeverityFlagsEXT,
        types: vk::DebugUtilsMessageTypeFlagsEXT,
        id: &str,
        text: &str,
    ) {
        log(&format!("[{severity:?}] {id}: {text}"));
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
        let text_c = CString::new(format!("tether layer: {}", text.replace('\0', " "))).unwrap_or_default();
        let data = vk::DebugUtilsMessengerCallbackDataEXT::default()
            .message_id_name(&id_c)
            .message_id_number(message_id_number(id))
            .message(&text_c);
        for m in targets {
            if let Some(callback) = m.callback {
                // SAFETY: the application registered `callback` with `user_data` on this instance;
                // `data` and its strings live across the call.
                unsafe { callback(severity, types, &data, m.user_data as *mut _) };
            }
        }
    }

    /// A broken valid-usage rule: an ERROR/VALIDATION message; returns
    /// `VK_ERROR_VALIDATION_FAILED_EXT` for the command to return.
    pub fn validation(&self, vuid: &str, text: &str) -> vk::Result {
        self.message(
            vk::DebugUtilsMessageSeverityFlagsEXT::ERROR,
            vk::DebugUtilsMessageTypeFlagsEXT::VALIDATION,
            vuid,
            text,
        );
        vk::Result::ERROR_VALIDATION_FAILED_EXT
    }

    /// A command failed for a reason the application should hear about (a bad handle, a
    /// refused request): a WARNING/GENERAL message; returns `code`.
    pub fn failure(&self, id: &str, text: &str, code: vk::Result) -> vk::Result {
        self.message(
            vk::DebugUtilsMessageSeverityFlagsEXT::WARNING,
            vk::DebugUtilsMessageTypeFlagsEXT::GENERAL,
            id,
            text,
        );
        code
    }

    /// Something the layer did differently from what was asked (e.g. a skipped D3D12 signal).
    pub fn warning(&self, id: &str, text: &str) {
        self.message(
            vk::DebugUtilsMessageSeverityFlagsEXT::WARNING,
            vk::DebugUtilsMessageTypeFlagsEXT::GENERAL,
            id,
            text,
        );
    }
}

/// Says `text` once per process (a `static AtomicBool` per call site).
pub fn once(flag: &AtomicBool, reporter: &Reporter, id: &str, text: &str) {
    if !flag.swap(true, Ordering::Relaxed) {
        reporter.message(
            vk::DebugUtilsMessageSeverityFlagsEXT::WARNING,
            vk::DebugUtilsMessageTypeFlagsEXT::GENERAL,
            id,
            text,
        );
    }
}

/// A stable number for a message id (FNV-1a folded to 31 bits), as the ICD gives one.
fn message_id_number(id: &str) -> i32 {
    let hash = id
        .bytes()
        .fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    (hash & 0x7fff_ffff) as i32
}
