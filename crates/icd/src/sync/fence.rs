//! `VkFence`.

use std::sync::Arc;

use ash::vk;
use tether_payload::{Payload, PayloadKind};

use super::{PayloadSlot, PendingWork};
use tether_handles::Win32Exports;

pub struct Fence {
    pub device_id: u64,
    /// `VkExportFenceCreateInfo::handleTypes` (empty for a private fence).
    pub export_types: vk::ExternalFenceHandleTypeFlags,
    pub slot: PayloadSlot,
    pub win32: Win32Exports,
    /// Submitted batches that will signal this fence and have not yet (shared with them: a
    /// batch may finish after the fence is destroyed).
    pub pending: Arc<PendingWork>,
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
            pending: Arc::default(),
        }
    }

    pub fn is_signaled(&self) -> bool {
        self.slot.active().is_signaled()
    }

    /// `vkResetFences`: the permanent payload comes back first, then it is reset.
    pub fn reset(&self) {
        self.slot.restore_permanent().reset();
    }
}
