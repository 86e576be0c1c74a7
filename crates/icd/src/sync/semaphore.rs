//! `VkSemaphore`, binary and timeline.

use std::sync::Arc;

use ash::vk;
use tether_payload::{Payload, PayloadKind, WaitFor};

use super::{PayloadSlot, PendingWork};
use tether_handles::Win32Exports;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SemaphoreType {
    Binary,
    Timeline,
}

impl SemaphoreType {
    /// The row kind of the handle-type table.
    pub fn object_kind(self) -> crate::handle_types::ObjectKind {
        match self {
            SemaphoreType::Binary => crate::handle_types::ObjectKind::BinarySemaphore,
            SemaphoreType::Timeline => crate::handle_types::ObjectKind::TimelineSemaphore,
        }
    }
}

/// The values a submit gives one semaphore operation: from `VkTimelineSemaphoreSubmitInfo` (or
/// `VkSemaphoreSubmitInfo`) and from `VkD3D12FenceSubmitInfoKHR`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpValues {
    pub timeline: Option<u64>,
    pub d3d12: Option<u64>,
}

impl OpValues {
    /// The value that applies to a payload of `kind`: a D3D12 fence takes the D3D12 value (else
    /// the timeline one), a timeline takes the timeline value, flags take none. D3D12 values are
    /// ignored for payloads that are not D3D12 fences, as the spec says.
    pub fn for_payload(self, kind: PayloadKind) -> Option<u64> {
        match kind {
            PayloadKind::D3d12Fence => self.d3d12.or(self.timeline),
            PayloadKind::Timeline => self.timeline,
            PayloadKind::Fence | PayloadKind::BinarySemaphore => None,
        }
    }
}

pub struct Semaphore {
    pub device_id: u64,
    pub semaphore_type: SemaphoreType,
    pub export_types: vk::ExternalSemaphoreHandleTypeFlags,
    pub slot: PayloadSlot,
    pub win32: Win32Exports,
    /// Submitted waits and signals on this semaphore that have not executed yet (shared with
    /// their batches, which may finish after the semaphore is destroyed).
    pub pending: Arc<PendingWork>,
}

impl Semaphore {
    pub fn new(
        device_id: u64,
        semaphore_type: SemaphoreType,
        export_types: vk::ExternalSemaphoreHandleTypeFlags,
        permanent: Payload,
        win32: Win32Exports,
    ) -> Semaphore {
        Semaphore {
            device_id,
            semaphore_type,
            export_types,
            slot: PayloadSlot::new(permanent),
            win32,
            pending: Arc::default(),
        }
    }

    /// The payload a submitted wait acts on, and what it waits for. A temporary payload is used
    /// by this wait and the permanent one restored after it.
    pub fn payload_for_wait(&self, values: OpValues) -> (Payload, WaitFor) {
        let payload = self.slot.take_active();
        let what = match values.for_payload(payload.kind()) {
            Some(v) => WaitFor::AtLeast(v),
            None if payload.kind().is_counter() => WaitFor::Signaled,
            None => WaitFor::Consume,
        };
        (payload, what)
    }
}
