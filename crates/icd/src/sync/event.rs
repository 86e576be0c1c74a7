//! `VkEvent`: a flag set and reset by the host or by a queue. It is a fence-kind payload, so it
//! waits the same way; recorded commands keep the payload, not the event.

use tether_payload::{Payload, PayloadKind};

pub struct Event {
    pub device_id: u64,
    pub payload: Payload,
}

impl Event {
    pub fn new(device_id: u64) -> Event {
        Event {
            device_id,
            payload: Payload::new_private(PayloadKind::Fence, 0),
        }
    }
}
