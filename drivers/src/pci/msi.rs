//! Plain MSI (PCI Local Bus 3.0 §6.8.1, PCI Express Base 4.0 §7.7.1): the capability read and
//! checked, and one message programmed into it.
//!
//! Layout from the capability's offset: ID and next pointer (0..2), message control (2..4),
//! message address (4..8); then, with 64-bit addresses (control bit 7), the upper address
//! (8..12) and the data (12..14), else the data (8..10); with per-vector masking (control bit
//! 8) the mask bits and the pending bits follow, each a dword, the first one dword-aligned
//! after the data. So the structure is 10, 14, 20 or 24 bytes long, and it must end inside the
//! 256-byte header space where the capability list lives: one that runs past it (a capability
//! at 0xf8, say) would have its tail read from whatever follows (ECAM's extended capabilities,
//! or all ones through the ports), so it is refused, not used.
//!
//! Rhea takes one message per function: multiple message enable stays 0, so the device sends
//! the data as written (with more messages enabled it would put the message number in the
//! data's low bits, §6.8.3.4) and every interrupt cause of the function shares the vector.

use super::{Address, ConfigAccess, cap_id, check_fits, command, read_command, write_command};
use crate::bus::{BindContext, Msi};
use alloc::format;
use alloc::string::String;

/// Message control bits (the upper half of the capability's first dword).
mod control {
    /// MSI enable.
    pub(super) const ENABLE: u16 = 1 << 0;
    /// Multiple message capable: log2 of the messages the function asks for (3 bits).
    pub(super) const MMC_SHIFT: u16 = 1;
    /// Multiple message enable: log2 of the messages granted (3 bits; 0: one).
    pub(super) const MME_MASK: u16 = 0b111 << 4;
    /// 64-bit message address capable.
    pub(super) const ADDRESS_64: u16 = 1 << 7;
    /// Per-vector masking capable.
    pub(super) const VECTOR_MASKING: u16 = 1 << 8;
    /// Extended message data enable (PCIe 4.0: the data register's upper 16 bits used); Rhea
    /// leaves it off.
    pub(super) const EXT_DATA_ENABLE: u16 = 1 << 10;
}

/// The largest multiple-message-capable value (5: 32 messages); 6 and 7 are reserved.
const MMC_MAX: u8 = 5;

/// The MSI capability of a function, as read and checked by [`MsiCapability::read`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiCapability {
    /// Offset of the capability.
    pub offset: u8,
    /// The function takes a 64-bit message address (control bit 7).
    pub is_64bit: bool,
    /// The function can mask each message (control bit 8).
    pub has_vector_masking: bool,
    /// Messages the function asks for (1, 2, 4 .. 32); Rhea grants one.
    pub messages_capable: u8,
}

impl MsiCapability {
    /// Reads the MSI capability at `cap` (an entry of [`capabilities`](super::capabilities)
    /// with ID [`cap_id::MSI`]). `Err` names what is wrong: not an MSI capability, an offset in
    /// the standard header, a reserved multiple-message-capable value, or a structure that
    /// runs past the end of the header space.
    pub fn read(access: &dyn ConfigAccess, at: Address, cap: u8) -> Result<Self, String> {
        if cap < 0x40 || cap & 3 != 0 {
            return Err(format!(
                "MSI capability at {cap:#04x}: not a dword in the device-specific area"
            ));
        }
        let header = access.read32(at, u16::from(cap));
        let id = header as u8;
        if id != cap_id::MSI {
            return Err(format!(
                "capability at {cap:#04x} has ID {id:#04x}, not MSI's {:#04x}",
                cap_id::MSI
            ));
        }
        let ctl = (header >> 16) as u16;
        let mmc = ((ctl >> control::MMC_SHIFT) & 0b111) as u8;
        if mmc > MMC_MAX {
            return Err(format!(
                "MSI capability at {cap:#04x}: multiple message capable {mmc} is reserved \
                 (message control {ctl:#06x})"
            ));
        }
        let found = MsiCapability {
            offset: cap,
            is_64bit: ctl & control::ADDRESS_64 != 0,
            has_vector_masking: ctl & control::VECTOR_MASKING != 0,
            messages_capable: 1 << mmc,
        };
        check_fits("MSI", cap, found.len_bytes())?;
        Ok(found)
    }

    /// Bytes of the structure (10, 14, 20 or 24).
    pub fn len_bytes(&self) -> u16 {
        match self.mask_offset() {
            Some(mask) => mask + 8,
            None => self.data_offset() + 2,
        }
    }

    /// Offset of the message data from the capability's start.
    fn data_offset(&self) -> u16 {
        if self.is_64bit { 0x0c } else { 0x08 }
    }

    /// Offset of the mask bits, if the function has them.
    fn mask_offset(&self) -> Option<u16> {
        self.has_vector_masking.then(|| self.data_offset() + 4)
    }

    /// Sets MSI enable, with multiple message enable 0 (one message) and extended message data
    /// off; the read-only and reserved bits of the dword are written back as read.
    pub fn set_enabled(&self, access: &dyn ConfigAccess, at: Address, enable: bool) {
        let offset = u16::from(self.offset);
        let v = access.read32(at, offset);
        let mut ctl = (v >> 16) as u16;
        ctl &= !(control::ENABLE | control::MME_MASK | control::EXT_DATA_ENABLE);
        if enable {
            ctl |= control::ENABLE;
        }
        access.write32(at, offset, (v & 0xffff) | (u32::from(ctl) << 16));
    }

    /// Whether MSI is enabled (reads the device).
    pub fn read_enabled(&self, access: &dyn ConfigAccess, at: Address) -> bool {
        (access.read32(at, u16::from(self.offset)) >> 16) as u16 & control::ENABLE != 0
    }

    /// Programs `msi` as the function's one message and enables MSI: disabled while the address
    /// and data change, message 0 unmasked (the others masked) when the function masks per
    /// message. `Err` when the message does not fit (an address above 4 GiB for a 32-bit
    /// capability, data above 16 bits, an address not dword-aligned) or the device does not
    /// keep MSI enabled.
    pub fn program(&self, access: &dyn ConfigAccess, at: Address, msi: Msi) -> Result<(), String> {
        let cap = u16::from(self.offset);
        if msi.address & 3 != 0 || (!self.is_64bit && msi.address >> 32 != 0) {
            return Err(format!(
                "MSI capability at {cap:#04x}: message address {:#x} does not fit its \
                 {}-bit address register",
                msi.address,
                if self.is_64bit { 64 } else { 32 }
            ));
        }
        let Ok(data) = u16::try_from(msi.data) else {
            return Err(format!(
                "MSI message data {:#x} does not fit the 16-bit data register",
                msi.data
            ));
        };
        self.set_enabled(access, at, false);
        access.write32(at, cap + 4, msi.address as u32);
        if self.is_64bit {
            access.write32(at, cap + 8, (msi.address >> 32) as u32);
        }
        // The data register is the low half of its dword; the high half is reserved (or
        // extended data, left disabled) and keeps what it held.
        let d = cap + self.data_offset();
        let old = access.read32(at, d);
        access.write32(at, d, (old & 0xffff_0000) | u32::from(data));
        if let Some(mask) = self.mask_offset() {
            let all = match self.messages_capable {
                32 => u32::MAX,
                n => (1u32 << n) - 1,
            };
            access.write32(at, cap + mask, all & !1);
        }
        self.set_enabled(access, at, true);
        if !self.read_enabled(access, at) {
            return Err(format!(
                "MSI capability at {cap:#04x}: MSI enable does not stay set"
            ));
        }
        Ok(())
    }
}

/// Enables MSI with one fresh vector, INTx disabled; `Ok(None)` when the platform has no
/// vector to give. Shared by the PCI NIC drivers (through `NicEnv::setup_irq`).
pub fn setup_msi(
    access: &dyn ConfigAccess,
    at: Address,
    cap: &MsiCapability,
    ctx: &dyn BindContext,
) -> Result<Option<u8>, String> {
    let Some(msi) = ctx.alloc_msi() else {
        return Ok(None);
    };
    cap.program(access, at, msi)?;
    write_command(access, at, read_command(access, at) | command::INTX_DISABLE);
    Ok(Some(msi.vector))
}

/// Clears MSI enable in the capability at `cap` without reading the rest of it (so even a
/// capability [`MsiCapability::read`] refuses is left off).
pub(super) fn disable(access: &dyn ConfigAccess, at: Address, cap: u8) {
    let offset = u16::from(cap);
    let v = access.read32(at, offset);
    let on = u32::from(control::ENABLE) << 16;
    if v & on != 0 {
        access.write32(at, offset, v & !on);
    }
}
