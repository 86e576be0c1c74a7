//! Device memory (anonymous host mappings) and buffers bound to it.

use std::ptr::NonNull;
use std::sync::{Arc, OnceLock};

use ash::vk;

/// One `VkDeviceMemory`: an anonymous private mapping, zeroed, that the host maps directly.
pub struct Memory {
    pub device_id: u64,
    base: NonNull<u8>,
    pub size: u64,
}

// SAFETY: `base` points to a mapping owned by this object for its whole life; access to the bytes
// is the application's to synchronize, as for any device memory.
unsafe impl Send for Memory {}
// SAFETY: as above.
unsafe impl Sync for Memory {}

impl Memory {
    pub fn allocate(device_id: u64, size: u64) -> Option<Memory> {
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
        Some(Memory {
            device_id,
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
    pub fn copy(src: &Memory, src_offset: u64, dst: &Memory, dst_offset: u64, len: u64) -> bool {
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

impl Drop for Memory {
    fn drop(&mut self) {
        // SAFETY: `base`/`size` describe the mapping made in `allocate`, unmapped only here.
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), (self.size as usize).max(1)) };
    }
}

/// One `VkBuffer`: a size and, once bound, a place in a memory object.
pub struct Buffer {
    pub device_id: u64,
    pub size: u64,
    pub usage: vk::BufferUsageFlags,
    pub binding: OnceLock<(Arc<Memory>, u64)>,
}

impl Buffer {
    /// The memory and offset of `range` bytes at `offset` within the buffer, if bound and in range.
    pub fn resolve(&self, offset: u64, len: u64) -> Option<(&Arc<Memory>, u64)> {
        let (memory, base) = self.binding.get()?;
        let end = offset.checked_add(len)?;
        (end <= self.size).then_some((memory, base + offset))
    }
}

/// Memory requirements of a buffer: any alignment works on the CPU; 16 keeps copies fast.
pub fn buffer_requirements(size: u64) -> vk::MemoryRequirements {
    vk::MemoryRequirements {
        size: size.div_ceil(16) * 16,
        alignment: 16,
        memory_type_bits: 1,
    }
}
