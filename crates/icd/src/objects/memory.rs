//! Device memory (anonymous host mappings) and buffers bound to it.
//!
//! A `VkDeviceMemory` is its bookkeeping ([`Memory`], in the object's storage) and a [`Mapping`]
//! that lives as long as anything uses it: the memory object, buffers bound to it, and commands
//! recorded or queued that copy to or from it.

use std::ptr::NonNull;
use std::sync::{Arc, OnceLock};

use ash::vk;

/// An anonymous private mapping, zeroed, that the host maps directly. Unmapped on drop.
pub struct Mapping {
    base: NonNull<u8>,
    pub size: u64,
}

// SAFETY: `base` points to a mapping owned by this object for its whole life; access to the bytes
// is the application's to synchronize, as for any device memory.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    pub fn new(size: u64) -> Option<Mapping> {
        let len = usize::try_from(size).ok()?.max(1);
        // SAFETY: an anonymous mapping at an address the kernel picks aliases nothing.
        let base = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE,
            )
        }
        .ok()?;
        Some(Mapping {
            base: NonNull::new(base.cast())?,
            size,
        })
    }

    /// The host address of `offset` (for `vkMapMemory`).
    pub fn host_pointer(&self, offset: u64) -> Option<*mut u8> {
        (offset <= self.size).then(|| self.base.as_ptr().wrapping_add(offset as usize))
    }

    fn range(&self, offset: u64, len: u64) -> Option<*mut u8> {
        let end = offset.checked_add(len)?;
        (end <= self.size).then(|| self.base.as_ptr().wrapping_add(offset as usize))
    }

    /// Copies `len` bytes between two memory ranges (which may be the same allocation and
    /// overlap). Out-of-range copies do nothing and return false.
    pub fn copy(src: &Mapping, src_offset: u64, dst: &Mapping, dst_offset: u64, len: u64) -> bool {
        let (Some(s), Some(d)) = (src.range(src_offset, len), dst.range(dst_offset, len)) else {
            return false;
        };
        // SAFETY: both ranges were checked to lie inside live mappings; `copy` allows overlap.
        unsafe { std::ptr::copy(s, d, len as usize) };
        true
    }

    /// Writes `bytes` at `offset`; false when out of range.
    pub fn write(&self, offset: u64, bytes: &[u8]) -> bool {
        let Some(d) = self.range(offset, bytes.len() as u64) else {
            return false;
        };
        // SAFETY: the range was checked to lie inside the mapping; `bytes` is a separate buffer.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), d, bytes.len()) };
        true
    }

    /// Fills `len` bytes at `offset` with the 4-byte pattern `word`; false when out of range.
    pub fn fill(&self, offset: u64, len: u64, word: u32) -> bool {
        let Some(d) = self.range(offset, len) else {
            return false;
        };
        let pattern = word.to_ne_bytes();
        for i in 0..len as usize {
            // SAFETY: `i < len` and the range was checked to lie inside the mapping.
            unsafe { d.add(i).write(pattern[i % 4]) };
        }
        true
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`size` describe the mapping made in `new`, unmapped only here.
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), (self.size as usize).max(1)) };
    }
}

/// One `VkDeviceMemory`.
pub struct Memory {
    pub device_id: u64,
    pub size: u64,
    pub mapping: Arc<Mapping>,
}

/// One `VkBuffer`: a size and, once bound, a place in a memory mapping.
pub struct Buffer {
    pub device_id: u64,
    pub size: u64,
    pub usage: vk::BufferUsageFlags,
    pub binding: OnceLock<(Arc<Mapping>, u64)>,
}

impl Buffer {
    /// The bound range, for a recorded command to keep (it may outlive the buffer); `None`
    /// while unbound.
    pub fn bound(&self) -> Option<BoundBuffer> {
        let (mapping, base) = self.binding.get()?;
        Some(BoundBuffer {
            mapping: Arc::clone(mapping),
            base: *base,
            size: self.size,
        })
    }
}

/// A bound buffer's range of memory, as commands see it.
#[derive(Clone)]
pub struct BoundBuffer {
    pub mapping: Arc<Mapping>,
    pub base: u64,
    pub size: u64,
}

impl BoundBuffer {
    /// The mapping and offset of `len` bytes at `offset` within the buffer, if in range.
    pub fn resolve(&self, offset: u64, len: u64) -> Option<(&Mapping, u64)> {
        let end = offset.checked_add(len)?;
        (end <= self.size).then_some((&*self.mapping, self.base + offset))
    }
}

/// Memory requirements of a buffer: any alignment works on the CPU; 16 keeps copies fast.
pub fn buffer_requirements(size: u64) -> vk::MemoryRequirements {
    vk::MemoryRequirements {
        // Saturating: a multiply that wraps (a size near 2^64) would ask for 0 bytes, and binding
        // such a buffer to any memory would let its commands write past that memory.
        size: size.div_ceil(16).saturating_mul(16),
        alignment: 16,
        memory_type_bits: 1,
    }
}
