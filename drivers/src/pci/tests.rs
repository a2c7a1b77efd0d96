//! PCI against a model of configuration space: functions with BARs that size like hardware
//! (writable address bits only), bridges, capability lists (sane, looping, pointing into the
//! header, running off its end), MSI-X, MSI, and the interrupt choice between them and INTx.
//! The model panics on a read past the 256-byte header space, so a test passing shows none
//! happened.

use super::*;
use crate::bus::{BindContext, Msi};
use alloc::collections::BTreeMap;
use alloc::string::ToString;
use alloc::sync::Arc;
use alloc::vec;
use core::cell::RefCell;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// One function's configuration space. BAR `i` keeps its flag bits and only the address bits
/// `bar_mask[i]` change on writes.
#[derive(Clone)]
struct Func {
    regs: [u32; 64],
    bar_mask: [u32; 6],
    /// Bits of each register writes do not change (outside the command register and BARs).
    read_only: [u32; 64],
}

impl Func {
    fn new(vendor: u16, device: u16, class: u32, header: u8) -> Func {
        let mut regs = [0; 64];
        regs[0] = u32::from(vendor) | (u32::from(device) << 16);
        regs[2] = class << 8;
        regs[3] = u32::from(header) << 16;
        Func {
            regs,
            bar_mask: [0; 6],
            read_only: [0; 64],
        }
    }
    /// A memory or I/O BAR of `size` bytes at `value` (flags in the low bits).
    fn bar(mut self, i: usize, value: u32, mask: u32) -> Func {
        self.regs[4 + i] = value;
        self.bar_mask[i] = mask;
        self
    }
    fn caps(mut self, first: u8, list: &[(u8, u8, u8)]) -> Func {
        self.regs[1] |= u32::from(STATUS_CAP_LIST) << 16;
        self.regs[0x34 / 4] = u32::from(first);
        for &(at, id, next) in list {
            let r = &mut self.regs[usize::from(at) / 4];
            *r = (*r & 0xffff_0000) | u32::from(id) | (u32::from(next) << 8);
        }
        self
    }
    fn reg(mut self, offset: usize, value: u32) -> Func {
        self.regs[offset / 4] = value;
        self
    }
    /// The capability at `cap` gets message control `control` (the upper half of its first
    /// dword); the ID, next pointer and `read_only` control bits cannot be written.
    fn control(mut self, cap: usize, control: u16, read_only: u16) -> Func {
        let r = &mut self.regs[cap / 4];
        *r = (*r & 0xffff) | (u32::from(control) << 16);
        self.read_only[cap / 4] = 0xffff | (u32::from(read_only) << 16);
        self
    }
}

#[derive(Default)]
struct Model {
    funcs: Mutex<BTreeMap<Address, Func>>,
    /// Every bus `open_bus` was called for.
    opened: Mutex<Vec<u8>>,
    /// Buses `open_bus` refuses.
    closed: Vec<u8>,
    /// Set if a BAR was written all ones while the function decoded memory or I/O.
    sized_while_decoding: AtomicBool,
    reads: AtomicUsize,
}

impl Model {
    fn with(funcs: Vec<(Address, Func)>) -> Model {
        Model {
            funcs: Mutex::new(funcs.into_iter().collect()),
            ..Model::default()
        }
    }
    fn get(&self, at: Address) -> Func {
        self.funcs.lock().unwrap()[&at].clone()
    }
}

impl ConfigAccess for Model {
    fn name(&self) -> &'static str {
        "model"
    }
    fn open_bus(&self, bus: u8, _: &dyn BindContext) -> Result<(), String> {
        self.opened.lock().unwrap().push(bus);
        if self.closed.contains(&bus) {
            return Err("outside the ECAM window".to_string());
        }
        Ok(())
    }
    fn read32(&self, at: Address, offset: u16) -> u32 {
        assert_eq!(offset % 4, 0);
        assert!(offset < 0x100, "read at {offset:#x}, past the header space");
        let n = self.reads.fetch_add(1, Ordering::Relaxed);
        assert!(n < 100_000, "runaway configuration reads");
        self.funcs
            .lock()
            .unwrap()
            .get(&at)
            .map_or(0xffff_ffff, |f| f.regs[usize::from(offset) / 4])
    }
    fn write32(&self, at: Address, offset: u16, value: u32) {
        assert!(
            offset < 0x100,
            "write at {offset:#x}, past the header space"
        );
        let mut funcs = self.funcs.lock().unwrap();
        let Some(f) = funcs.get_mut(&at) else { return };
        let i = usize::from(offset) / 4;
        match offset {
            reg::COMMAND => f.regs[1] = (f.regs[1] & 0xffff_0000) | (value & 0xffff),
            0x10..=0x24 => {
                let b = i - 4;
                let flags = if f.regs[i] & 1 == 1 { 0x3 } else { 0xf };
                let is_upper_half = b > 0 && f.regs[i - 1] & 0b111 == 0b100;
                let keep = if is_upper_half { 0 } else { flags };
                if value == 0xffff_ffff && f.regs[1] & 0x3 != 0 {
                    self.sized_while_decoding.store(true, Ordering::Relaxed);
                }
                f.regs[i] = (f.regs[i] & keep) | (value & f.bar_mask[b]);
            }
            _ => f.regs[i] = (f.regs[i] & f.read_only[i]) | (value & !f.read_only[i]),
        }
    }
}

struct NoCtx;
impl BindContext for NoCtx {
    fn map_mmio(&self, phys: u64, _: u64) -> Option<u64> {
        Some(phys)
    }
    fn alloc_msi(&self) -> Option<Msi> {
        None
    }
}

fn at(bus: u8, device: u8, function: u8) -> Address {
    Address::new(bus, device, function).unwrap()
}

/// A bridge on `bus` forwarding to `secondary`.
fn bridge(primary: u8, secondary: u8) -> Func {
    Func::new(0x8086, 0x244e, 0x06_04_00, 1).reg(
        0x18,
        u32::from(primary) | (u32::from(secondary) << 8) | (0xff << 16),
    )
}

#[test]
fn address_range_and_display() {
    assert_eq!(Address::new(0, 32, 0), None);
    assert_eq!(Address::new(0, 0, 8), None);
    assert_eq!(at(0, 0x1f, 3).to_string(), "0000:00:1f.3");
}

#[test]
fn enumerates_multifunction_devices_and_bridges() {
    let model = Model::with(vec![
        (at(0, 0, 0), Func::new(0x8086, 0x29c0, 0x06_00_00, 0)),
        // Device 2: a single-function device with functions 1.. reading as present must not be
        // probed (only header bit 7 says there are more).
        (at(0, 2, 0), Func::new(0x1af4, 0x1000, 0x02_00_00, 0)),
        (at(0, 2, 1), Func::new(0x1234, 0x1111, 0x01_00_00, 0)),
        // Device 0x1f: multi-function, functions 0, 2, 3.
        (at(0, 0x1f, 0), Func::new(0x8086, 0x2918, 0x06_01_00, 0x80)),
        (at(0, 0x1f, 2), Func::new(0x8086, 0x2922, 0x01_06_01, 0)),
        (at(0, 0x1f, 3), Func::new(0x8086, 0x2930, 0x0c_05_00, 0)),
        // A bridge to bus 1, which holds another bridge to bus 2.
        (at(0, 3, 0), bridge(0, 1)),
        (at(1, 0, 0), bridge(1, 2)),
        (at(1, 5, 0), Func::new(0x1af4, 0x1041, 0x02_00_00, 0)),
        (at(2, 0, 0), Func::new(0x1b36, 0x0010, 0x01_08_02, 0)),
    ]);
    let e = enumerate(&model, &NoCtx);
    let found: Vec<_> = e.functions.iter().map(|f| f.address).collect();
    assert_eq!(
        found,
        vec![
            at(0, 0, 0),
            at(0, 2, 0),
            at(0, 3, 0),
            at(0, 0x1f, 0),
            at(0, 0x1f, 2),
            at(0, 0x1f, 3),
            at(1, 0, 0),
            at(1, 5, 0),
            at(2, 0, 0),
        ]
    );
    assert!(e.problems.is_empty(), "{:?}", e.problems);
    assert_eq!(
        *model.opened.lock().unwrap(),
        vec![0, 1, 2],
        "only the buses used"
    );
    let nic = e
        .functions
        .iter()
        .find(|f| f.address == at(0, 2, 0))
        .unwrap();
    assert_eq!(
        (nic.vendor, nic.device, nic.class),
        (0x1af4, 0x1000, [2, 0, 0])
    );
    assert_eq!(e.functions[2].header_type, 1);
}

#[test]
fn misprogrammed_bridges_do_not_loop() {
    let model = Model::with(vec![
        (at(0, 1, 0), bridge(0, 1)),
        // Bus 1's bridge points back to bus 0, another to bus 1 itself, a third to bus 1 again.
        (at(1, 0, 0), bridge(1, 0)),
        (at(1, 1, 0), bridge(1, 1)),
        (at(0, 2, 0), bridge(0, 1)),
    ]);
    let e = enumerate(&model, &NoCtx);
    assert_eq!(e.functions.len(), 4);
    assert_eq!(*model.opened.lock().unwrap(), vec![0, 1]);
    assert_eq!(e.problems.len(), 3, "{:?}", e.problems);
    assert!(
        e.problems[0].contains("already scanned"),
        "{:?}",
        e.problems
    );
}

#[test]
fn a_bus_that_cannot_be_opened_is_reported_and_skipped() {
    let mut model = Model::with(vec![
        (at(0, 1, 0), bridge(0, 7)),
        (at(7, 0, 0), bridge(7, 8)),
    ]);
    model.closed = vec![7];
    let e = enumerate(&model, &NoCtx);
    assert_eq!(e.functions.len(), 1);
    assert_eq!(e.problems, vec!["bus 07 skipped: outside the ECAM window"]);
}

#[test]
fn sizes_32_and_64_bit_memory_and_io_bars_with_decoding_off() {
    let f = Func::new(0x1af4, 0x1000, 0x02_00_00, 0)
        .reg(0x04, 0x0000_0007) // I/O, memory, bus master on
        .bar(0, 0x0000_c041, 0xffff_ffe0) // I/O, 32 bytes at 0xc040
        .bar(1, 0xfebd_1000, 0xffff_f000) // 32-bit memory, 4 KiB
        .bar(2, 0, 0) // unimplemented
        .bar(4, 0xfe00_000c, 0xffff_c000) // 64-bit prefetchable, 16 KiB ...
        .bar(5, 0x0000_0001, 0xffff_ffff); // ... at 0x1_fe00_0000
    let model = Model::with(vec![(at(0, 2, 0), f)]);
    let b = bars(&model, at(0, 2, 0)).unwrap();
    assert_eq!(
        b[0],
        Some(Bar::Io {
            port: 0xc040,
            size: 32
        })
    );
    assert_eq!(
        b[1],
        Some(Bar::Memory {
            address: 0xfebd_1000,
            size: 4096,
            is64: false,
            prefetchable: false
        })
    );
    assert_eq!(b[2], None);
    assert_eq!(b[3], None);
    assert_eq!(
        b[4],
        Some(Bar::Memory {
            address: 0x1_fe00_0000,
            size: 16384,
            is64: true,
            prefetchable: true
        })
    );
    assert_eq!(b[5], None, "the upper half is part of BAR4");
    assert!(!model.sized_while_decoding.load(Ordering::Relaxed));
    let after = model.get(at(0, 2, 0));
    assert_eq!(after.regs[1] & 0xffff, 7, "command restored");
    assert_eq!(
        &after.regs[4..10],
        &[0xc041, 0xfebd_1000, 0, 0, 0xfe00_000c, 1],
        "BARs restored"
    );
}

#[test]
fn io_bars_decoding_16_bits_and_bad_bars() {
    let f = Func::new(1, 2, 0, 0).bar(0, 0x0000_1001, 0x0000_fff0);
    let model = Model::with(vec![(at(0, 1, 0), f)]);
    assert_eq!(
        bars(&model, at(0, 1, 0)).unwrap()[0],
        Some(Bar::Io {
            port: 0x1000,
            size: 16
        })
    );
    let last64 = Func::new(1, 2, 0, 0).bar(5, 0x4, 0xffff_f000);
    let reserved = Func::new(1, 2, 0, 0).bar(0, 0x6, 0xffff_f000);
    let model = Model::with(vec![(at(0, 1, 0), last64), (at(0, 2, 0), reserved)]);
    assert!(bars(&model, at(0, 1, 0)).unwrap_err().contains("last BAR"));
    assert!(bars(&model, at(0, 2, 0)).unwrap_err().contains("reserved"));
    // A bridge has two BARs; CardBus none we decode.
    let model = Model::with(vec![
        (
            at(0, 1, 0),
            bridge(0, 1)
                .bar(0, 0xfe00_0000, 0xffff_f000)
                .bar(2, 0x1234_0000, 0xffff_0000),
        ),
        (at(0, 2, 0), Func::new(1, 2, 0, 2)),
    ]);
    let b = bars(&model, at(0, 1, 0)).unwrap();
    assert!(matches!(b[0], Some(Bar::Memory { size: 4096, .. })));
    assert_eq!(b[2], None, "a bridge's third register is not a BAR");
    assert!(bars(&model, at(0, 2, 0)).is_err());
}

#[test]
fn capability_lists_sane_looping_and_wild() {
    let sane = Func::new(1, 2, 0, 0).caps(
        0x98,
        &[(0x98, 0x11, 0x84), (0x84, 0x09, 0x41), (0x40, 0x09, 0)],
    );
    let looping = Func::new(1, 2, 0, 0).caps(0x40, &[(0x40, 0x09, 0x50), (0x50, 0x09, 0x40)]);
    let to_self = Func::new(1, 2, 0, 0).caps(0x40, &[(0x40, 0x09, 0x40)]);
    let into_header = Func::new(1, 2, 0, 0).caps(0x40, &[(0x40, 0x09, 0x10)]);
    let none = Func::new(1, 2, 0, 0).reg(0x34, 0x40); // pointer set but status bit clear
    let model = Model::with(vec![
        (at(0, 1, 0), sane),
        (at(0, 2, 0), looping),
        (at(0, 3, 0), to_self),
        (at(0, 4, 0), into_header),
        (at(0, 5, 0), none),
    ]);
    let caps = capabilities(&model, at(0, 1, 0)).unwrap();
    // The low two bits of a next pointer are reserved and ignored (0x41 → 0x40).
    assert_eq!(
        caps,
        vec![
            Capability {
                offset: 0x98,
                id: 0x11
            },
            Capability {
                offset: 0x84,
                id: 0x09
            },
            Capability {
                offset: 0x40,
                id: 0x09
            },
        ]
    );
    assert_eq!(
        capabilities(&model, at(0, 2, 0)).unwrap_err(),
        "capability list loops back to 0x40"
    );
    assert!(
        capabilities(&model, at(0, 3, 0))
            .unwrap_err()
            .contains("loops")
    );
    assert!(
        capabilities(&model, at(0, 4, 0))
            .unwrap_err()
            .contains("header")
    );
    assert_eq!(capabilities(&model, at(0, 5, 0)).unwrap(), vec![]);
}

/// An MSI-X table in "memory".
struct Table(RefCell<Vec<u32>>);
impl Mmio32 for Table {
    fn read32(&self, offset: usize) -> u32 {
        self.0.borrow()[offset / 4]
    }
    fn write32(&self, offset: usize, value: u32) {
        self.0.borrow_mut()[offset / 4] = value;
    }
}

#[test]
fn msix_capability_table_entry_enable_and_mask() {
    // QEMU's virtio-net-pci: 3 vectors, table and PBA in BAR1 (PBA at 0x800).
    let f = Func::new(0x1af4, 0x1000, 0x02_00_00, 0)
        .caps(0x98, &[(0x98, 0x11, 0)])
        .reg(0x98, 0x0002_0011)
        .reg(0x9c, 0x0000_0001)
        .reg(0xa0, 0x0000_0801);
    let model = Model::with(vec![(at(0, 2, 0), f)]);
    let cap = MsixCapability::read(&model, at(0, 2, 0), 0x98).unwrap();
    assert_eq!(
        cap,
        MsixCapability {
            offset: 0x98,
            table_size: 3,
            table_bar: 1,
            table_offset: 0,
            pba_bar: 1,
            pba_offset: 0x800
        }
    );
    assert_eq!(cap.table_len(), 48);
    cap.set(&model, at(0, 2, 0), true, true);
    assert_eq!(cap.state(&model, at(0, 2, 0)), (true, true));
    assert_eq!(
        model.get(at(0, 2, 0)).regs[0x98 / 4],
        0xc002_0011,
        "ID and table size kept"
    );
    cap.set(&model, at(0, 2, 0), true, false);
    assert_eq!(cap.state(&model, at(0, 2, 0)), (true, false));

    let table = Table(RefCell::new(vec![0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]));
    let msi = Msi {
        address: 0x1_fee0_1000,
        data: 0x41,
        vector: 0x41,
    };
    program_msix_entry(&table, 1, msi);
    assert_eq!(
        *table.0.borrow(),
        vec![0, 0, 0, 1, 0xfee0_1000, 1, 0x41, 0, 0, 0, 0, 1],
        "entry 1 written and unmasked, the others untouched"
    );

    let bad = Func::new(1, 2, 0, 0).reg(0x9c, 0x7);
    let model = Model::with(vec![(at(0, 1, 0), bad)]);
    assert!(MsixCapability::read(&model, at(0, 1, 0), 0x98).is_err());
}

#[test]
fn intx_pin_and_line() {
    let model = Model::with(vec![
        (at(0, 1, 0), Func::new(1, 2, 0, 0).reg(0x3c, 0x0000_010b)),
        (at(0, 2, 0), Func::new(1, 2, 0, 0).reg(0x3c, 0x0000_00ff)),
        (at(0, 3, 0), Func::new(1, 2, 0, 0).reg(0x3c, 0x0000_0905)),
    ]);
    assert_eq!(intx(&model, at(0, 1, 0)), Some(Intx { pin: 1, line: 11 }));
    assert_eq!(intx(&model, at(0, 2, 0)), None, "no pin");
    assert_eq!(intx(&model, at(0, 3, 0)), None, "pin 9 does not exist");
}

#[test]
fn byte_and_word_reads() {
    let model = Model::with(vec![(
        at(0, 1, 0),
        Func::new(0x1af4, 0x1041, 0x02_00_00, 0),
    )]);
    assert_eq!(read16(&model, at(0, 1, 0), 2), 0x1041);
    assert_eq!(read8(&model, at(0, 1, 0), 0x0b), 0x02);
    write_command(&model, at(0, 1, 0), command::MEMORY | command::BUS_MASTER);
    assert_eq!(read_command(&model, at(0, 1, 0)), 6);
}

#[test]
fn unassigned_memory_bars_get_aligned_addresses() {
    let f = Func::new(0x1af4, 0x1000, 0x02_00_00, 0)
        .reg(0x04, 0x0000_0003)
        .bar(0, 0x0000_0001, 0xffff_ffe0) // I/O, unassigned: left alone
        .bar(1, 0, 0xffff_f000) // 32-bit memory, 4 KiB
        .bar(4, 0x0000_000c, 0xffff_c000) // 64-bit prefetchable, 16 KiB
        .bar(5, 0, 0xffff_ffff);
    let model = Model::with(vec![(at(0, 1, 0), f)]);
    let alloc = BarAllocator::new(0xc000_0800, 0xc010_0000);
    let b = assign_memory_bars(&model, at(0, 1, 0), &alloc).unwrap();
    assert!(matches!(
        b[1],
        Some(Bar::Memory {
            address: 0xc000_1000,
            size: 0x1000,
            ..
        })
    ));
    assert!(matches!(
        b[4],
        Some(Bar::Memory {
            address: 0xc000_4000,
            size: 0x4000,
            is64: true,
            ..
        })
    ));
    assert_eq!(b[0], Some(Bar::Io { port: 0, size: 32 }));
    assert_eq!(
        bars(&model, at(0, 1, 0)).unwrap(),
        b,
        "the registers hold the addresses"
    );
    assert!(!model.sized_while_decoding.load(Ordering::Relaxed));
    assert_eq!(
        model.get(at(0, 1, 0)).regs[1] & 0xffff,
        3,
        "command restored"
    );
    // The window runs out: a refusal, not an overlap.
    let g = Func::new(1, 2, 0, 0).bar(0, 0, 0xfff0_0000);
    let model = Model::with(vec![(at(0, 2, 0), g)]);
    let e = assign_memory_bars(&model, at(0, 2, 0), &alloc).unwrap_err();
    assert!(e.contains("none is left"), "{e}");
    assert_eq!(
        BarAllocator::new(0, 1 << 20).alloc(3),
        None,
        "sizes are powers of two"
    );
}

/// Message control bits the model's MSI capabilities hold read-only: multiple message
/// capable, 64-bit, per-vector masking, extended data capable.
const MSI_CONTROL_RO: u16 = 0b1110 | (1 << 7) | (1 << 8) | (1 << 9);

fn message(vector: u8) -> Msi {
    Msi {
        address: 0xfee0_0000,
        data: u32::from(vector),
        vector,
    }
}

#[test]
fn msi_capability_layouts_programmed_with_one_message() {
    // QEMU's e1000e: MSI at 0xd0, 64-bit, one message, no masking; firmware left multiple
    // message enable at 2 and the data register's reserved half non-zero.
    let e1000e = Func::new(0x8086, 0x10d3, 0x02_00_00, 0)
        .caps(0xd0, &[(0xd0, 0x05, 0)])
        .control(0xd0, 0x0080 | (2 << 4), MSI_CONTROL_RO)
        .reg(0xdc, 0xabcd_0000);
    // 32-bit, 8 messages, per-vector masking: data at +8, mask bits at +12, pending at +16.
    let masked32 = Func::new(1, 2, 0, 0)
        .caps(0x50, &[(0x50, 0x05, 0)])
        .control(0x50, (3 << 1) | (1 << 8), MSI_CONTROL_RO)
        .reg(0x60, 0x0000_0010);
    // 64-bit, 32 messages, per-vector masking, ending exactly at 0x100.
    let masked64 = Func::new(1, 2, 0, 0)
        .caps(0xe8, &[(0xe8, 0x05, 0)])
        .control(0xe8, (5 << 1) | (1 << 7) | (1 << 8), MSI_CONTROL_RO);
    let model = Model::with(vec![
        (at(0, 2, 0), e1000e),
        (at(0, 3, 0), masked32),
        (at(0, 4, 0), masked64),
    ]);

    let cap = MsiCapability::read(&model, at(0, 2, 0), 0xd0).unwrap();
    assert_eq!(
        cap,
        MsiCapability {
            offset: 0xd0,
            is_64bit: true,
            has_vector_masking: false,
            messages_capable: 1
        }
    );
    assert_eq!(cap.len_bytes(), 14);
    cap.program(&model, at(0, 2, 0), message(0x41)).unwrap();
    let f = model.get(at(0, 2, 0));
    assert_eq!(
        f.regs[0xd0 / 4],
        0x0081_0005,
        "enabled, one message (MME 0), ID kept"
    );
    assert_eq!(
        &f.regs[0xd4 / 4..0xe0 / 4],
        &[0xfee0_0000, 0, 0xabcd_0041],
        "address low and high, data in the low half (the high half kept)"
    );
    assert!(cap.read_enabled(&model, at(0, 2, 0)));
    cap.set_enabled(&model, at(0, 2, 0), false);
    assert!(!cap.read_enabled(&model, at(0, 2, 0)));

    let cap = MsiCapability::read(&model, at(0, 3, 0), 0x50).unwrap();
    assert_eq!((cap.is_64bit, cap.has_vector_masking), (false, true));
    assert_eq!((cap.messages_capable, cap.len_bytes()), (8, 20));
    cap.program(&model, at(0, 3, 0), message(0x42)).unwrap();
    let f = model.get(at(0, 3, 0));
    assert_eq!(
        &f.regs[0x50 / 4..0x64 / 4],
        &[0x0107_0005, 0xfee0_0000, 0x42, 0xfe, 0x10],
        "data at +8, message 0 unmasked and 1..8 masked, pending bits untouched"
    );

    let cap = MsiCapability::read(&model, at(0, 4, 0), 0xe8).unwrap();
    assert_eq!((cap.messages_capable, cap.len_bytes()), (32, 24));
    cap.program(&model, at(0, 4, 0), message(0x43)).unwrap();
    let f = model.get(at(0, 4, 0));
    assert_eq!(f.regs[0xf4 / 4], 0x43, "data at +12");
    assert_eq!(f.regs[0xf8 / 4], 0xffff_fffe, "all 32 but message 0 masked");
}

#[test]
fn msi_capabilities_that_lie_are_refused() {
    let msi = |cap: u8, control: u16| {
        Func::new(1, 2, 0, 0).caps(cap, &[(cap, 0x05, 0)]).control(
            usize::from(cap),
            control,
            MSI_CONTROL_RO,
        )
    };
    let model = Model::with(vec![
        // Runs off the header space: 64-bit (14 bytes) at 0xf4, 32-bit (10) at 0xf8,
        // 32-bit with masking (20) at 0xf0.
        (at(0, 1, 0), msi(0xf4, 1 << 7)),
        (at(0, 2, 0), msi(0xf8, 0)),
        (at(0, 3, 0), msi(0xf0, 1 << 8)),
        // Fits: 32-bit (10 bytes) at 0xf4.
        (at(0, 4, 0), msi(0xf4, 0)),
        // A reserved multiple-message-capable value (6).
        (at(0, 5, 0), msi(0x40, 6 << 1)),
        // Not an MSI capability at all.
        (
            at(0, 6, 0),
            Func::new(1, 2, 0, 0).caps(0x40, &[(0x40, 0x11, 0)]),
        ),
        // MSI enable that does not stick.
        (
            at(0, 7, 0),
            Func::new(1, 2, 0, 0)
                .caps(0x40, &[(0x40, 0x05, 0)])
                .control(0x40, 0, MSI_CONTROL_RO | 1),
        ),
        // MSI-X's 12 bytes at 0xf8.
        (
            at(0, 8, 0),
            Func::new(1, 2, 0, 0).caps(0xf8, &[(0xf8, 0x11, 0)]),
        ),
    ]);
    let read = |d, cap| MsiCapability::read(&model, at(0, d, 0), cap);
    for (d, cap) in [(1, 0xf4), (2, 0xf8), (3, 0xf0)] {
        let e = read(d, cap).unwrap_err();
        assert!(e.contains("runs past the end"), "{e}");
    }
    let fits = read(4, 0xf4).unwrap();
    assert_eq!(fits.len_bytes(), 10);
    assert!(read(5, 0x40).unwrap_err().contains("reserved"));
    assert!(read(6, 0x40).unwrap_err().contains("not MSI"));
    assert!(read(1, 0x10).unwrap_err().contains("device-specific"));
    // Messages that do not fit the registers.
    let high = Msi {
        address: 0x1_fee0_0000,
        ..message(0x41)
    };
    assert!(
        fits.program(&model, at(0, 4, 0), high)
            .unwrap_err()
            .contains("32-bit address")
    );
    let wide = Msi {
        data: 0x1_0041,
        ..message(0x41)
    };
    assert!(
        fits.program(&model, at(0, 4, 0), wide)
            .unwrap_err()
            .contains("16-bit")
    );
    let stuck = read(7, 0x40).unwrap();
    assert!(
        stuck
            .program(&model, at(0, 7, 0), message(0x41))
            .unwrap_err()
            .contains("does not stay set")
    );
    let e = MsixCapability::read(&model, at(0, 8, 0), 0xf8).unwrap_err();
    assert!(e.contains("MSI-X capability at 0xf8"), "{e}");
}

/// Vectors to give (0x41, 0x42, ..), registers mapped 1:1.
struct Vectors {
    next: core::cell::Cell<u8>,
    left: core::cell::Cell<u8>,
}

impl Vectors {
    fn new(left: u8) -> Vectors {
        Vectors {
            next: core::cell::Cell::new(0x41),
            left: core::cell::Cell::new(left),
        }
    }
}

impl BindContext for Vectors {
    fn map_mmio(&self, phys: u64, _: u64) -> Option<u64> {
        Some(phys)
    }
    fn alloc_msi(&self) -> Option<Msi> {
        let left = self.left.get().checked_sub(1)?;
        self.left.set(left);
        let v = self.next.get();
        self.next.set(v + 1);
        Some(message(v))
    }
}

/// Capabilities like QEMU's e1000e's: power management at 0xc8, MSI at 0xd0 (64-bit, one
/// message), PCI Express at 0xe0, MSI-X at 0xa0 (5 entries, table at 0 and PBA at 0x2000 of
/// BAR3); INTA routed to line 11; firmware left MSI and MSI-X both enabled.
fn e1000e_like() -> Func {
    Func::new(0x8086, 0x10d3, 0x02_00_00, 0)
        .reg(0x04, 0x0000_0006)
        .caps(
            0xc8,
            &[
                (0xc8, 0x01, 0xd0),
                (0xd0, 0x05, 0xe0),
                (0xe0, 0x10, 0xa0),
                (0xa0, 0x11, 0),
            ],
        )
        .control(0xd0, 0x0081, MSI_CONTROL_RO)
        .reg(0xa0, 0x8004_0011)
        .reg(0xa4, 0x0000_0003)
        .reg(0xa8, 0x0000_2003)
        .reg(0x3c, 0x0000_010b)
}

fn env(model: Arc<Model>, allow_msix: bool, allow_msi: bool) -> NicEnv {
    static SPACE: BarAllocator = BarAllocator::new(0xc000_0000, 0xd000_0000);
    NicEnv {
        access: model,
        bar_space: &SPACE,
        allow_msix,
        allow_msi,
        intx_gsi: |line| Some(u32::from(line)),
    }
}

#[test]
fn interrupt_choice_msix_else_msi_else_intx() {
    // The MSI-X table lives in ordinary memory standing for BAR3.
    let mut table = vec![1u32; 4 * 5];
    let mut bars = [None; 6];
    bars[3] = Some(Bar::Memory {
        address: table.as_mut_ptr() as u64,
        size: 0x4000,
        is64: true,
        prefetchable: false,
    });
    let nic = at(0, 2, 0);
    let msix_on = |f: &Func| f.regs[0xa0 / 4] & (1 << 31) != 0;
    let msi_on = |f: &Func| f.regs[0xd0 / 4] & (1 << 16) != 0;
    let intx_off = |f: &Func| f.regs[1] & u32::from(command::INTX_DISABLE) != 0;
    let choose = |allow_msix, allow_msi, vectors| {
        let model = Arc::new(Model::with(vec![(nic, e1000e_like())]));
        let env = env(Arc::clone(&model), allow_msix, allow_msi);
        let caps = capabilities(&*model, nic).unwrap();
        let irq = env.setup_irq(nic, &caps, &bars, &Vectors::new(vectors));
        (irq, model.get(nic))
    };

    // Default: MSI-X, with MSI switched off.
    let (irq, f) = choose(true, true, 4);
    assert_eq!(irq, Ok(PciIrq::Msix(0x41)));
    assert!(msix_on(&f) && !msi_on(&f) && intx_off(&f));
    assert_eq!(&table[..4], &[0xfee0_0000, 0, 0x41, 0], "entry 0 unmasked");
    assert_eq!(irq.as_ref().unwrap().to_string(), "MSI-X vector 0x41");

    // `rhea.pci.msix=off`: MSI, with the MSI-X firmware left on switched off.
    let (irq, f) = choose(false, true, 4);
    assert_eq!(irq, Ok(PciIrq::Msi(0x41)));
    assert!(!msix_on(&f) && msi_on(&f) && intx_off(&f));
    assert_eq!(&f.regs[0xd4 / 4..0xe0 / 4], &[0xfee0_0000, 0, 0x41]);
    let irq = irq.unwrap();
    assert_eq!(irq.to_string(), "MSI vector 0x41");
    assert_eq!(irq.device_irq(), DeviceIrq::Vector(0x41));

    // `rhea.pci.msi=off` alone changes nothing while MSI-X is used.
    assert_eq!(choose(true, false, 4).0, Ok(PciIrq::Msix(0x41)));

    // Both off: INTx, neither message kind left on, INTx not disabled.
    let (irq, f) = choose(false, false, 4);
    assert_eq!(irq, Ok(PciIrq::Intx(11)));
    assert!(!msix_on(&f) && !msi_on(&f) && !intx_off(&f));
    let irq = irq.unwrap();
    assert_eq!(irq.to_string(), "INTx GSI 11");
    assert_eq!(
        irq.device_irq(),
        DeviceIrq::Line(rhea_hal::IrqLine(11), rhea_hal::Trigger::LevelLow)
    );

    // No vector to give: INTx, whatever is allowed.
    let (irq, f) = choose(true, true, 0);
    assert_eq!(irq, Ok(PciIrq::Intx(11)));
    assert!(!msix_on(&f) && !msi_on(&f) && !intx_off(&f));
}

#[test]
fn interrupt_choice_with_malformed_capabilities() {
    let bars = [None; 6];
    let nic = at(0, 2, 0);
    let setup = |f: Func, allow_msix, allow_msi| {
        let model = Arc::new(Model::with(vec![(nic, f)]));
        let env = env(Arc::clone(&model), allow_msix, allow_msi);
        capabilities(&*model, nic)
            .and_then(|caps| env.setup_irq(nic, &caps, &bars, &Vectors::new(4)))
    };
    // A device without MSI-X: MSI is next even when MSI-X is allowed.
    let no_msix = e1000e_like().caps(0xc8, &[(0xe0, 0x10, 0)]);
    assert_eq!(setup(no_msix, true, true), Ok(PciIrq::Msi(0x41)));
    // An MSI-X capability naming BAR 7: refused where MSI-X is allowed, never read where not.
    let bad_msix = e1000e_like().reg(0xa4, 0x0000_0007);
    let e = setup(bad_msix.clone(), true, true).unwrap_err();
    assert!(e.contains("BAR 7"), "{e}");
    assert_eq!(setup(bad_msix, false, true), Ok(PciIrq::Msi(0x41)));
    // An MSI capability at the end of the header space that claims 64-bit addresses (its
    // data would be at 0x108): refused, nothing read past 0x100 (the model would panic).
    let off_the_end = e1000e_like()
        .caps(0xc8, &[(0xc8, 0x01, 0xf8), (0xf8, 0x05, 0)])
        .control(0xf8, 0x0080, MSI_CONTROL_RO);
    let e = setup(off_the_end.clone(), false, true).unwrap_err();
    assert!(e.contains("MSI capability at 0xf8"), "{e}");
    assert_eq!(setup(off_the_end, false, false), Ok(PciIrq::Intx(11)));
    // Chains that loop back (through the MSI capability, or onto itself), point into the
    // header, or read as all ones (a function gone): errors, not hangs.
    let looping = e1000e_like().caps(0xc8, &[(0xe0, 0x10, 0xd0)]);
    assert_eq!(
        setup(looping, true, true).unwrap_err(),
        "capability list loops back to 0xd0"
    );
    let to_self = e1000e_like().caps(0xd0, &[(0xd0, 0x05, 0xd0)]);
    assert!(setup(to_self, true, true).unwrap_err().contains("loops"));
    let into_header = e1000e_like().caps(0xc8, &[(0xa0, 0x11, 0x3c)]);
    assert!(
        setup(into_header, true, true)
            .unwrap_err()
            .contains("standard header")
    );
    let gone = Func {
        regs: [0xffff_ffff; 64],
        ..e1000e_like()
    };
    assert!(setup(gone, true, true).unwrap_err().contains("loops"));
}
