//! `VkSemaphore`, binary and timeline.

use std::sync::atomic::{AtomicU32, Ordering};

use ash::vk;
use tether_payload::{Payload, WaitFor};

use super::PayloadSlot;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SemaphoreType {
    Binary,
    Timeline,
}

pub struct Semaphore {
    pub device_id: u64,
    pub semaphore_type: SemaphoreType,
    pub export_types: vk::ExternalSemaphoreHandleTypeFlags,
    pub slot: PayloadSlot,
    /// Submitted waits and signals on this semaphore that have not executed yet.
    pending: AtomicU32,
}

impl Semaphore {
    pub fn new(
        device_id: u64,
        semaphore_type: SemaphoreType,
        export_types: vk::ExternalSemaphoreHandleTypeFlags,
        permanent: Payload,
    ) -> Semaphore {
        Semaphore {
            device_id,
            semaphore_type,
            export_types,
            slot: PayloadSlot::new(permanent),
            pending: AtomicU32::new(0),
        }
    }

    /// The payload a submitted wait acts on, and what it waits for. A temporary payload is used
    /// by this wait and the permanent one restored after it.
    pub fn payload_for_wait(&self, value: u64) -> (Payload, WaitFor) {
        let payload = self.slot.take_active();
        let what = if payload.kind().is_counter() {
            WaitFor::AtLeast(value)
        } else {
            WaitFor::Consume
        };
        (payload, what)
    }

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
