//! `VkFence`.

use std::sync::atomic::{AtomicU32, Ordering};

use ash::vk;
use tether_payload::{Payload, PayloadKind};

use super::PayloadSlot;
use tether_handles::Win32Exports;

pub struct Fence {
    pub device_id: u64,
    /// `VkExportFenceCreateInfo::handleTypes` (empty for a private fence).
    pub export_types: vk::ExternalFenceHandleTypeFlags,
    pub slot: PayloadSlot,
    pub win32: Win32Exports,
    /// Submitted batches that will signal this fence and have not yet.
    pending: AtomicU32,
}

impl Fence {
    pub fn new(
        device_id: u64,
        signaled: bool,
        export_types: vk::ExternalFenceHandleTypeFlags,
        permanent: Payload,
        win32: Win32Exports,
    ) -> Fence {
        debug_assert_eq!(permanent.kind(), PayloadKind::Fence);
        if signaled {
            permanent.signal();
        }
        Fence {
            device_id,
            export_types,
            slot: PayloadSlot::new(permanent),
            win32,
            pending: AtomicU32::new(0),
        }
    }

    pub fn is_signaled(&self) -> bool {
        self.slot.active().is_signaled()
    }

    /// `vkResetFences`: the permanent payload comes back first, then it is reset.
    pub fn reset(&self) {
        self.slot.restore_permanent().reset();
    }

    /// Whether queue work that will signal this fence is still outstanding.
    pub fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire) != 0
    }

    pub fn begin_pending(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    pub fn end_pending(&self) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
    }
}
