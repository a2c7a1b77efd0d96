//! The kernel image as the board's linker script lays it out: what the board tells the kernel
//! so that page tables can give each section its permissions.

use core::ops::Range;

/// The kernel image's sections, page-aligned, from the board's linker script, and the device
/// ranges the board uses before any driver maps its own.
#[derive(Clone, Debug)]
pub struct KernelImage {
    /// Code: mapped read-only, executable.
    pub text: Range<u64>,
    /// Constants (and the ELF notes): read-only.
    pub rodata: Range<u64>,
    /// Data, the symbol table and bss: read-write.
    pub data: Range<u64>,
    /// Device registers mapped as device memory from the start (AArch64's early console);
    /// empty ranges are ignored. x86 boards' serial console is a port; pc-uefi lists its
    /// framebuffer here.
    pub early_mmio: [Range<u64>; 2],
}

/// Which of the image's sections an address is in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Section {
    /// `text`: read-only, executable.
    Text,
    /// `rodata`: read-only.
    Rodata,
    /// `data`: read-write, never executable.
    Data,
}

impl KernelImage {
    /// The sections, with no early device ranges.
    pub const fn new(text: Range<u64>, rodata: Range<u64>, data: Range<u64>) -> Self {
        Self {
            text,
            rodata,
            data,
            early_mmio: [0..0, 0..0],
        }
    }

    /// The whole image.
    pub fn range(&self) -> Range<u64> {
        self.text.start..self.data.end
    }

    /// The section `addr` lies in, if any (each architecture maps it to its page attributes).
    pub fn section_of(&self, addr: u64) -> Option<Section> {
        if self.text.contains(&addr) {
            Some(Section::Text)
        } else if self.rodata.contains(&addr) {
            Some(Section::Rodata)
        } else if self.data.contains(&addr) {
            Some(Section::Data)
        } else {
            None
        }
    }
}
