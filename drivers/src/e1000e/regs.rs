//! The Intel 82574 GbE controller's registers, bits and descriptor layouts: the one place that
//! knows them (82574 Family GbE Controller Datasheet, rev. 3.4: §10.2 register descriptions,
//! §7.1.4 legacy receive descriptor, §7.2.10.1 legacy transmit descriptor, §7.4.2 MSI-X). Pure
//! data and pure functions; no register access happens here.

/// PCI vendor ID of Intel.
pub const VENDOR_INTEL: u16 = 0x8086;
/// The 82574L's PCI device ID (QEMU's `-device e1000e`).
pub const DEVICE_82574L: u16 = 0x10d3;

/// Register offsets in BAR0 (memory), bytes (§10.2).
pub mod reg {
    /// Device control.
    pub const CTRL: usize = 0x0000;
    /// Device status.
    pub const STATUS: usize = 0x0008;
    /// Extended device control.
    pub const CTRL_EXT: usize = 0x0018;
    /// Interrupt cause read (write 1s to clear).
    pub const ICR: usize = 0x00c0;
    /// Interrupt throttling (0: off).
    pub const ITR: usize = 0x00c4;
    /// Interrupt mask set (1s enable causes).
    pub const IMS: usize = 0x00d0;
    /// Interrupt mask clear (1s disable causes).
    pub const IMC: usize = 0x00d8;
    /// MSI-X auto-clear of causes (82574 only).
    pub const EIAC: usize = 0x00dc;
    /// MSI-X: which vector each cause raises (82574 only, §10.2.4.9).
    pub const IVAR: usize = 0x00e4;
    /// Receive control.
    pub const RCTL: usize = 0x0100;
    /// Transmit control.
    pub const TCTL: usize = 0x0400;
    /// Transmit inter-packet gap.
    pub const TIPG: usize = 0x0410;
    /// Receive filter control (bit 15: extended descriptors).
    pub const RFCTL: usize = 0x5008;
    /// Receive descriptor base, low and high 32 bits.
    pub const RDBAL: usize = 0x2800;
    /// Receive descriptor base, high 32 bits.
    pub const RDBAH: usize = 0x2804;
    /// Receive ring length, bytes (a multiple of 128).
    pub const RDLEN: usize = 0x2808;
    /// Receive head (the device's next descriptor).
    pub const RDH: usize = 0x2810;
    /// Receive tail (the first descriptor the device may not use).
    pub const RDT: usize = 0x2818;
    /// Receive interrupt delay (0: none).
    pub const RDTR: usize = 0x2820;
    /// Receive absolute interrupt delay.
    pub const RADV: usize = 0x282c;
    /// Transmit descriptor base, low 32 bits.
    pub const TDBAL: usize = 0x3800;
    /// Transmit descriptor base, high 32 bits.
    pub const TDBAH: usize = 0x3804;
    /// Transmit ring length, bytes (a multiple of 128).
    pub const TDLEN: usize = 0x3808;
    /// Transmit head.
    pub const TDH: usize = 0x3810;
    /// Transmit tail (one past the last descriptor given to the device).
    pub const TDT: usize = 0x3818;
    /// Transmit interrupt delay.
    pub const TIDV: usize = 0x3820;
    /// Transmit absolute interrupt delay.
    pub const TADV: usize = 0x382c;
    /// Transmit arbitration count, queue 0 (bit 10: queue enabled).
    pub const TARC0: usize = 0x3840;
    /// Missed packets (no room in the receive FIFO; clear on read).
    pub const MPC: usize = 0x4010;
    /// Multicast table array, 128 registers.
    pub const MTA: usize = 0x5200;
    /// Receive address 0, low 32 bits (the MAC's first four bytes, loaded from the EEPROM).
    pub const RAL0: usize = 0x5400;
    /// Receive address 0, high 16 bits and the valid bit.
    pub const RAH0: usize = 0x5404;
    /// Bytes of the register BAR the driver touches (the BAR is 128 KiB).
    pub const WINDOW: u64 = 0x2_0000;
}

/// CTRL bits (§10.2.2.1).
pub mod ctrl {
    /// Stop issuing new master (DMA) requests.
    pub const GIO_MASTER_DISABLE: u32 = 1 << 2;
    /// Auto-speed detection.
    pub const ASDE: u32 = 1 << 5;
    /// Set link up.
    pub const SLU: u32 = 1 << 6;
    /// Device reset (self-clearing).
    pub const RST: u32 = 1 << 26;
}

/// STATUS bits (§10.2.2.2).
pub mod status {
    /// Link up.
    pub const LU: u32 = 1 << 1;
    /// Master (DMA) requests still pending.
    pub const GIO_MASTER_ENABLE: u32 = 1 << 19;
}

/// CTRL_EXT bits (§10.2.2.5).
pub mod ctrl_ext {
    /// MSI-X: clear the pending-bit array when the cause is cleared.
    pub const PBA_CLR: u32 = 1 << 31;
}

/// Interrupt causes: ICR, IMS, IMC bits (§10.2.4.1).
pub mod icr {
    /// A transmit descriptor was written back.
    pub const TXDW: u32 = 1 << 0;
    /// Link status changed.
    pub const LSC: u32 = 1 << 2;
    /// Receive descriptors fell below the threshold.
    pub const RXDMT0: u32 = 1 << 4;
    /// Receive overrun (frames missed).
    pub const RXO: u32 = 1 << 6;
    /// Receive timer (a frame arrived).
    pub const RXT0: u32 = 1 << 7;
    /// MSI-X: receive queue 0.
    pub const RXQ0: u32 = 1 << 20;
    /// MSI-X: transmit queue 0.
    pub const TXQ0: u32 = 1 << 22;
    /// MSI-X: any other cause (link changes, overruns).
    pub const OTHER: u32 = 1 << 24;
    /// Every cause the driver uses (INTx and MSI-X forms both).
    pub const USED: u32 = TXDW | LSC | RXDMT0 | RXO | RXT0 | RXQ0 | TXQ0 | OTHER;
}

/// IVAR: every cause (receive queue 0, transmit queue 0, other) to MSI-X table entry `entry`
/// (§10.2.4.9: a 3-bit vector and a valid bit per cause), and a transmit interrupt on every
/// descriptor write-back (bit 31).
pub const fn ivar_all_to(entry: u32) -> u32 {
    let e = 0x8 | (entry & 0x7);
    e | (e << 8) | (e << 16) | (1 << 31)
}

/// RCTL bits (§10.2.5.1).
pub mod rctl {
    /// Receiver enable.
    pub const EN: u32 = 1 << 1;
    /// Accept broadcast.
    pub const BAM: u32 = 1 << 15;
    /// Strip the Ethernet CRC.
    pub const SECRC: u32 = 1 << 26;
    /// Buffer size 2048 (BSIZE 00, BSEX 0) and descriptor type legacy (DTYP 00): no bits.
    pub const BSIZE_2048: u32 = 0;
}

/// RFCTL bit: extended receive descriptors (off: legacy ones).
pub const RFCTL_EXSTEN: u32 = 1 << 15;

/// TARC0 bit: transmit queue enabled (QEMU starts no transmission without it).
pub const TARC_ENABLE: u32 = 1 << 10;

/// TCTL bits (§10.2.6.1).
pub mod tctl {
    /// Transmitter enable.
    pub const EN: u32 = 1 << 1;
    /// Pad short frames to 64 bytes.
    pub const PSP: u32 = 1 << 3;
    /// Collision threshold 15 (bits 11:4).
    pub const CT_15: u32 = 0x0f << 4;
    /// Collision distance 63 (bits 21:12; full duplex).
    pub const COLD_63: u32 = 0x3f << 12;
    /// Retransmit on late collision.
    pub const RTLC: u32 = 1 << 24;
}

/// TIPG for copper: IPGT 8, IPGR1 8, IPGR2 6 (§10.2.6.3).
pub const TIPG_COPPER: u32 = 8 | (8 << 10) | (6 << 20);

/// RAH bit: the address is valid.
pub const RAH_AV: u32 = 1 << 31;

/// The MAC address held in RAL0/RAH0; `Err` says why it cannot be used: not marked valid, all
/// zeros (no EEPROM image), or a multicast/broadcast address (the low bit of the first byte).
pub fn mac_from_receive_address(ral: u32, rah: u32) -> Result<[u8; 6], &'static str> {
    let l = ral.to_le_bytes();
    let h = rah.to_le_bytes();
    let mac = [l[0], l[1], l[2], l[3], h[0], h[1]];
    if mac == [0; 6] {
        return Err("receive address 0 is all zeros (no MAC address loaded from the EEPROM)");
    }
    if mac[0] & 1 != 0 {
        return Err("receive address 0 is a multicast address, not a station's");
    }
    if rah & RAH_AV == 0 {
        return Err("receive address 0 is not marked valid (RAH.AV clear)");
    }
    Ok(mac)
}

/// Bytes of one descriptor (both kinds, both directions).
pub const DESC_LEN: usize = 16;

/// Legacy receive descriptor (§7.1.4): buffer address (0..8), length (8..10), checksum
/// (10..12), status (12), errors (13), special (14..16). The device writes all but the address.
pub mod rx_desc {
    /// Offset of the buffer address.
    pub const ADDR: usize = 0;
    /// Offset of the second quadword (length, checksum, status, errors, special).
    pub const WRITEBACK: usize = 8;
    /// Status: descriptor done.
    pub const DD: u8 = 1 << 0;
    /// Status: end of packet.
    pub const EOP: u8 = 1 << 1;
    /// Errors: CRC, symbol, sequence, carrier extension, RX data error (not the checksum
    /// offload bits, which the driver does not enable).
    pub const FRAME_ERRORS: u8 = 0x01 | 0x02 | 0x04 | 0x10 | 0x80;
}

/// The fields of a receive descriptor's second quadword as the device wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxWriteback {
    /// Bytes the device wrote into the buffer (untrusted).
    pub len: u16,
    /// Status bits ([`rx_desc::DD`], [`rx_desc::EOP`]).
    pub status: u8,
    /// Error bits.
    pub errors: u8,
}

impl RxWriteback {
    /// Decodes the second quadword of a receive descriptor.
    pub fn decode(q: u64) -> Self {
        RxWriteback {
            len: q as u16,
            status: (q >> 32) as u8,
            errors: (q >> 40) as u8,
        }
    }

    /// Encodes it (the device model in the tests writes it).
    pub fn encode(self) -> u64 {
        u64::from(self.len) | u64::from(self.status) << 32 | u64::from(self.errors) << 40
    }

    /// Whether the device has finished with the descriptor.
    pub fn is_done(self) -> bool {
        self.status & rx_desc::DD != 0
    }
}

/// Legacy transmit descriptor (§7.2.10.1): buffer address (0..8), length (8..10), checksum
/// offset (10), command (11), status (12), checksum start (13), special (14..16).
pub mod tx_desc {
    /// Offset of the buffer address.
    pub const ADDR: usize = 0;
    /// Offset of the second quadword.
    pub const CONTROL: usize = 8;
    /// Command: end of packet.
    pub const CMD_EOP: u8 = 1 << 0;
    /// Command: insert the FCS.
    pub const CMD_IFCS: u8 = 1 << 1;
    /// Command: report status (write DD back).
    pub const CMD_RS: u8 = 1 << 3;
    /// Status: descriptor done.
    pub const DD: u8 = 1 << 0;
}

/// The second quadword of a legacy transmit descriptor sending `len` bytes as one frame,
/// status clear.
pub fn tx_control(len: u16) -> u64 {
    let cmd = tx_desc::CMD_EOP | tx_desc::CMD_IFCS | tx_desc::CMD_RS;
    u64::from(len) | u64::from(cmd) << 24
}

/// Decodes a transmit descriptor's second quadword: (length, command, status).
pub fn tx_fields(q: u64) -> (u16, u8, u8) {
    (q as u16, (q >> 24) as u8, (q >> 32) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_from_the_receive_address() {
        // QEMU's default 52:54:00:12:34:56.
        let ral = u32::from_le_bytes([0x52, 0x54, 0x00, 0x12]);
        let rah = u32::from(u16::from_le_bytes([0x34, 0x56])) | RAH_AV;
        assert_eq!(
            mac_from_receive_address(ral, rah),
            Ok([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
        );
        assert!(
            mac_from_receive_address(0, RAH_AV)
                .unwrap_err()
                .contains("all zeros")
        );
        assert!(
            mac_from_receive_address(0xffff_ffff, 0xffff | RAH_AV)
                .unwrap_err()
                .contains("multicast")
        );
        assert!(
            mac_from_receive_address(ral, rah & !RAH_AV)
                .unwrap_err()
                .contains("not marked valid")
        );
    }

    #[test]
    fn descriptor_fields() {
        let w = RxWriteback {
            len: 1514,
            status: rx_desc::DD | rx_desc::EOP,
            errors: 0,
        };
        assert_eq!(RxWriteback::decode(w.encode()), w);
        assert!(w.is_done());
        assert_eq!(
            tx_fields(tx_control(60)),
            (
                60,
                tx_desc::CMD_EOP | tx_desc::CMD_IFCS | tx_desc::CMD_RS,
                0
            )
        );
        assert_eq!(ivar_all_to(0), 0x8008_0808);
    }
}
