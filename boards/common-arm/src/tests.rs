//! Host tests of the devicetree reader and the platform facts: QEMU's own `virt` trees (dumped
//! with `-M virt,gic-version=N,dumpdtb=...` and recompiled by `dtc` without padding), a
//! Raspberry Pi 4-shaped tree built here (bus address translation, reservations, split RAM),
//! and every kind of corruption.

use crate::fdt::{self, Fdt, FdtError};
use crate::platform::{
    ArmPlatform, Cpu, EnableMethod, Gic, MAX_CPUS, MAX_VIRTIO_MMIO, MmioRange, PlatformError,
    PsciConduit, SpiTrigger, Trigger, VirtioMmio, cpus_from_cmdline, node_interrupt,
    psci_error_name, virtio_mmio,
};
use rhea_mm::RegionKind;

const VIRT_GICV2: &[u8] = include_bytes!("../testdata/qemu-virt-gicv2.dtb");
const VIRT_GICV3: &[u8] = include_bytes!("../testdata/qemu-virt-gicv3.dtb");
/// `-M virt,gic-version=2 -smp 4`: with more than one CPU QEMU adds `enable-method = "psci"`.
const VIRT_GICV2_SMP4: &[u8] = include_bytes!("../testdata/qemu-virt-gicv2-smp4.dtb");

/// Builds flattened devicetrees (version 17) for tests.
#[derive(Default)]
struct Builder {
    structs: Vec<u8>,
    strings: Vec<u8>,
    reservations: Vec<(u64, u64)>,
}

impl Builder {
    fn u32(&mut self, v: u32) -> &mut Self {
        self.structs.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn pad(&mut self) {
        while !self.structs.len().is_multiple_of(4) {
            self.structs.push(0);
        }
    }
    fn begin(&mut self, name: &str) -> &mut Self {
        self.u32(1);
        self.structs.extend_from_slice(name.as_bytes());
        self.structs.push(0);
        self.pad();
        self
    }
    fn end(&mut self) -> &mut Self {
        self.u32(2)
    }
    fn prop(&mut self, name: &str, value: &[u8]) -> &mut Self {
        let nameoff = match self
            .strings
            .windows(name.len() + 1)
            .position(|w| &w[..name.len()] == name.as_bytes() && w[name.len()] == 0)
        {
            Some(off) => off,
            None => {
                let off = self.strings.len();
                self.strings.extend_from_slice(name.as_bytes());
                self.strings.push(0);
                off
            }
        };
        self.u32(3).u32(value.len() as u32).u32(nameoff as u32);
        self.structs.extend_from_slice(value);
        self.pad();
        self
    }
    fn cells(&mut self, name: &str, cells: &[u32]) -> &mut Self {
        let v: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
        self.prop(name, &v)
    }
    fn string(&mut self, name: &str, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.prop(name, &v)
    }
    fn finish(&mut self) -> Vec<u8> {
        self.u32(9);
        let rsv_off = 40usize;
        let mut rsv = Vec::new();
        for &(a, s) in &self.reservations {
            rsv.extend_from_slice(&a.to_be_bytes());
            rsv.extend_from_slice(&s.to_be_bytes());
        }
        rsv.extend_from_slice(&[0; 16]);
        let struct_off = rsv_off + rsv.len();
        let strings_off = struct_off + self.structs.len();
        let total = strings_off + self.strings.len();
        let header = [
            fdt::MAGIC,
            total as u32,
            struct_off as u32,
            strings_off as u32,
            rsv_off as u32,
            17,
            16,
            0,
            self.strings.len() as u32,
            self.structs.len() as u32,
        ];
        let mut blob: Vec<u8> = header.iter().flat_map(|w| w.to_be_bytes()).collect();
        blob.extend_from_slice(&rsv);
        blob.extend_from_slice(&self.structs);
        blob.extend_from_slice(&self.strings);
        blob
    }
}

/// A `/cpus/cpu@N` node for [`Pi4::cpus`].
#[derive(Clone)]
struct CpuNode {
    device_type: &'static str,
    reg: Vec<u32>,
    method: Option<&'static str>,
    release: Option<Vec<u32>>,
    status: Option<&'static str>,
}

impl CpuNode {
    fn psci(mpidr: u64) -> Self {
        Self {
            device_type: "cpu",
            reg: vec![(mpidr >> 32) as u32, mpidr as u32],
            method: Some("psci"),
            release: None,
            status: None,
        }
    }
    fn spin(mpidr: u32, release: u32) -> Self {
        Self {
            device_type: "cpu",
            reg: vec![mpidr],
            method: Some("spin-table"),
            release: Some(vec![0, release]),
            status: None,
        }
    }
}

/// The parts of a Raspberry Pi 4 tree Rhea reads (from `bcm2711-rpi-4-b.dts`, with the
/// memory node filled in as the firmware, or QEMU, does), with switches to break it.
#[derive(Clone)]
struct Pi4 {
    timer: bool,
    uart: bool,
    memory_bytes: u32,
    gic_compatible: &'static str,
    uart_reg_cells: usize,
    soc_ranges: bool,
    psci_method: Option<&'static str>,
    high_memory: bool,
    /// Replaces the four spin-table CPUs: `/cpus`'s `#address-cells`, `#size-cells`, nodes.
    cpus: Option<(u32, u32, Vec<CpuNode>)>,
    /// More `/chosen` properties (the initrd's).
    chosen: Vec<(&'static str, Vec<u8>)>,
}

impl Default for Pi4 {
    fn default() -> Self {
        Self {
            timer: true,
            uart: true,
            memory_bytes: 0x3b40_0000,
            gic_compatible: "arm,gic-400",
            uart_reg_cells: 2,
            soc_ranges: true,
            psci_method: None,
            high_memory: true,
            cpus: None,
            chosen: Vec::new(),
        }
    }
}

impl Pi4 {
    fn build(self) -> Vec<u8> {
        let mut b = Builder {
            reservations: vec![(0, 0x1000)],
            ..Builder::default()
        };
        b.begin("")
            .string("model", "Raspberry Pi 4 Model B")
            .prop("compatible", b"raspberrypi,4-model-b\0brcm,bcm2711\0")
            .cells("#address-cells", &[2])
            .cells("#size-cells", &[1])
            .cells("interrupt-parent", &[1]);
        b.begin("chosen")
            .string("bootargs", "rhea.checker=1 loops=5")
            .string("stdout-path", "serial1:115200n8");
        for (name, value) in &self.chosen {
            b.prop(name, value);
        }
        b.end();
        b.begin("reserved-memory")
            .cells("#address-cells", &[2])
            .cells("#size-cells", &[1])
            .prop("ranges", &[]);
        b.begin("linux,cma")
            .string("compatible", "shared-dma-pool")
            .cells("size", &[0x400_0000])
            .end();
        b.begin("nvram@0")
            .cells("reg", &[0, 0x0010_0000, 0x1000])
            .end();
        b.end();
        b.begin("soc")
            .prop("compatible", b"simple-bus\0")
            .cells("#address-cells", &[1])
            .cells("#size-cells", &[1]);
        if self.soc_ranges {
            b.cells(
                "ranges",
                &[
                    0x7e00_0000,
                    0,
                    0xfe00_0000,
                    0x180_0000, //
                    0x4000_0000,
                    0,
                    0xff80_0000,
                    0x80_0000,
                ],
            );
        }
        if self.uart {
            let reg = [0x7e20_1000, 0x200];
            b.begin("serial@7e201000")
                .prop("compatible", b"arm,pl011\0arm,primecell\0")
                .cells("reg", &reg[..self.uart_reg_cells])
                .cells("interrupts", &[0, 0x79, 4])
                .cells("clocks", &[7, 0x13, 7, 0x14])
                .string("status", "okay")
                .end();
        }
        b.begin("serial@7e201400")
            .prop("compatible", b"arm,pl011\0arm,primecell\0")
            .cells("reg", &[0x7e20_1400, 0x200])
            .string("status", "disabled")
            .end();
        b.begin("interrupt-controller@40041000")
            .prop("interrupt-controller", &[])
            .cells("#interrupt-cells", &[3])
            .string("compatible", self.gic_compatible)
            .cells(
                "reg",
                &[
                    0x4004_1000,
                    0x1000,
                    0x4004_2000,
                    0x2000,
                    0x4004_4000,
                    0x2000,
                ],
            )
            .cells("phandle", &[1])
            .end();
        b.end();
        let (ac, sc, nodes) = self.cpus.clone().unwrap_or_else(|| {
            let pi = [0xd8u32, 0xe0, 0xe8, 0xf0]
                .into_iter()
                .enumerate()
                .map(|(i, release)| CpuNode::spin(i as u32, release));
            (1, 0, pi.collect())
        });
        b.begin("cpus")
            .cells("#address-cells", &[ac])
            .cells("#size-cells", &[sc]);
        for (i, cpu) in nodes.iter().enumerate() {
            b.begin(&format!("cpu@{i}"))
                .string("device_type", cpu.device_type)
                .string("compatible", "arm,cortex-a72");
            if !cpu.reg.is_empty() {
                b.cells("reg", &cpu.reg);
            }
            if let Some(m) = cpu.method {
                b.string("enable-method", m);
            }
            if let Some(r) = &cpu.release {
                b.cells("cpu-release-addr", r);
            }
            if let Some(st) = cpu.status {
                b.string("status", st);
            }
            b.end();
        }
        // Not a CPU: skipped.
        b.begin("cpu-map").begin("cluster0").end().end();
        b.end();
        if self.timer {
            b.begin("timer")
                .prop("compatible", b"arm,armv8-timer\0")
                .cells(
                    "interrupts",
                    &[1, 13, 0xf08, 1, 14, 0xf08, 1, 11, 0xf08, 1, 10, 0xf08],
                )
                .end();
        }
        if let Some(method) = self.psci_method {
            b.begin("psci")
                .prop("compatible", b"arm,psci-1.0\0arm,psci-0.2\0")
                .string("method", method)
                .end();
        }
        b.begin("memory@0")
            .string("device_type", "memory")
            .cells("reg", &[0, 0, self.memory_bytes])
            .end();
        if self.high_memory {
            b.begin("memory@40000000")
                .string("device_type", "memory")
                .cells("reg", &[0, 0x4000_0000, 0x4000_0000])
                .end();
        }
        b.end();
        b.finish()
    }
}

fn platform(blob: &[u8]) -> Result<ArmPlatform<'_>, String> {
    let fdt = Fdt::new(blob).map_err(|e| e.to_string())?;
    ArmPlatform::from_fdt(&fdt).map_err(|e| e.to_string())
}

#[test]
fn qemu_virt_gicv2() {
    let p = platform(VIRT_GICV2).unwrap();
    assert_eq!(
        p.gic,
        Gic::V2 {
            distributor: MmioRange {
                base: 0x800_0000,
                len: 0x1_0000
            },
            cpu_interface: MmioRange {
                base: 0x801_0000,
                len: 0x1_0000
            },
        }
    );
    assert_eq!(p.uart.unwrap().regs.base, 0x900_0000);
    assert_eq!(p.uart.unwrap().interrupt.intid, 33);
    assert_eq!(p.uart.unwrap().interrupt.trigger, Trigger::Level);
    assert_eq!(p.uart.unwrap().clock_hz, Some(24_000_000));
    assert_eq!(p.virtual_timer.intid, 27);
    assert_eq!(p.psci, Some(PsciConduit::Hvc));
    let ram: Vec<_> = p
        .memory_map
        .usable()
        .map(|r| (r.start.0, r.len_bytes))
        .collect();
    assert_eq!(ram, [(0x4000_0000, 128 << 20)]);
    assert_eq!(p.bootargs, "");
    assert_eq!(
        p.cpus.as_slice(),
        [Cpu {
            mpidr: 0,
            enable: EnableMethod::None
        }],
        "with one CPU QEMU gives it no enable-method"
    );
}

#[test]
fn qemu_virt_four_cpus() {
    let p = platform(VIRT_GICV2_SMP4).unwrap();
    let psci = |mpidr| Cpu {
        mpidr,
        enable: EnableMethod::Psci,
    };
    assert_eq!(p.cpus.as_slice(), [psci(0), psci(1), psci(2), psci(3)]);
    assert_eq!(p.cpus.count(0), 4);
    assert_eq!(p.psci, Some(PsciConduit::Hvc));
}

#[test]
fn qemu_virt_gicv3() {
    let p = platform(VIRT_GICV3).unwrap();
    match p.gic {
        Gic::V3 {
            distributor,
            redistributors,
        } => {
            assert_eq!(distributor.base, 0x800_0000);
            assert_eq!(redistributors.base, 0x80a_0000);
            assert_eq!(redistributors.len, 0xf6_0000);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.virtual_timer.intid, 27);
}

#[test]
fn raspberry_pi_4() {
    let blob = Pi4::default().build();
    let p = platform(&blob).unwrap();
    assert_eq!(p.model, Some("Raspberry Pi 4 Model B"));
    // Bus addresses translated through /soc's ranges.
    assert_eq!(
        p.gic,
        Gic::V2 {
            distributor: MmioRange {
                base: 0xff84_1000,
                len: 0x1000
            },
            cpu_interface: MmioRange {
                base: 0xff84_2000,
                len: 0x2000
            },
        }
    );
    assert_eq!(p.uart.unwrap().regs.base, 0xfe20_1000);
    assert_eq!(p.uart.unwrap().interrupt.intid, 32 + 0x79);
    assert_eq!(
        p.uart.unwrap().clock_hz,
        None,
        "firmware clocks are not fixed clocks"
    );
    assert_eq!(p.virtual_timer.intid, 27);
    assert_eq!(p.virtual_timer.trigger, Trigger::Level);
    assert_eq!(p.psci, None);
    assert_eq!(p.bootargs, "rhea.checker=1 loops=5");
    let spin = |mpidr, release_addr| Cpu {
        mpidr,
        enable: EnableMethod::SpinTable { release_addr },
    };
    assert_eq!(
        p.cpus.as_slice(),
        [spin(0, 0xd8), spin(1, 0xe0), spin(2, 0xe8), spin(3, 0xf0)]
    );
    assert_eq!(p.cpus.listed(), 4);
    assert_eq!(p.cpus.count(0), 4);
    // The /memreserve/ page and the nvram reservation are carved out of RAM.
    let regions: Vec<_> = p
        .memory_map
        .regions()
        .iter()
        .map(|r| (r.start.0, r.end().0, r.kind))
        .collect();
    assert_eq!(
        regions,
        [
            (0, 0x1000, RegionKind::Reserved),
            (0x1000, 0x10_0000, RegionKind::Usable),
            (0x10_0000, 0x10_1000, RegionKind::Reserved),
            (0x10_1000, 0x3b40_0000, RegionKind::Usable),
            (0x4000_0000, 0x8000_0000, RegionKind::Usable),
        ]
    );
}

#[test]
fn the_initrd_from_chosen() {
    let with = |props: &[(&'static str, &[u32])]| {
        let chosen = props
            .iter()
            .map(|(n, cells)| (*n, cells.iter().flat_map(|c| c.to_be_bytes()).collect()))
            .collect();
        let blob = Pi4 {
            chosen,
            ..Pi4::default()
        }
        .build();
        platform(&blob).map(|p| p.initrd)
    };
    assert_eq!(with(&[]), Ok(None));
    // One cell each (the Pi's firmware) and two (QEMU virt).
    let one = with(&[
        ("linux,initrd-start", &[0x200_0000]),
        ("linux,initrd-end", &[0x211_2345]),
    ]);
    assert_eq!(one, Ok(Some((0x200_0000, 0x11_2345))));
    let two = with(&[
        ("linux,initrd-start", &[0, 0x200_0000]),
        ("linux,initrd-end", &[0, 0x211_2345]),
    ]);
    assert_eq!(two, one);
    let empty = with(&[
        ("linux,initrd-start", &[0x200_0000]),
        ("linux,initrd-end", &[0x200_0000]),
    ]);
    assert_eq!(empty, Ok(None));
    let refused = |props: &[(&'static str, &[u32])], why: &str| {
        let e = with(props).expect_err("must be refused");
        assert!(e.contains(why), "{e}");
    };
    refused(
        &[("linux,initrd-start", &[0x200_0000])],
        "without linux,initrd-end",
    );
    refused(
        &[
            ("linux,initrd-start", &[0x300_0000]),
            ("linux,initrd-end", &[0x200_0000]),
        ],
        "below linux,initrd-start",
    );
    refused(
        &[
            ("linux,initrd-start", &[1, 2, 3]),
            ("linux,initrd-end", &[0x200_0000]),
        ],
        "neither one nor two cells",
    );
    // In the reserved nvram page, past RAM's end, straddling RAM's end.
    for (start, end) in [
        (0x10_0000, 0x10_0800),
        (0xfe00_0000, 0xfe00_1000),
        (0x3b3f_f000, 0x3b40_1000),
    ] {
        refused(
            &[
                ("linux,initrd-start", &[start]),
                ("linux,initrd-end", &[end]),
            ],
            "outside usable RAM",
        );
    }
}

#[test]
fn psci_methods() {
    let p = Pi4 {
        psci_method: Some("smc"),
        ..Pi4::default()
    };
    assert_eq!(platform(&p.build()).unwrap().psci, Some(PsciConduit::Smc));
    let p = Pi4 {
        psci_method: Some("svc"),
        ..Pi4::default()
    };
    assert!(platform(&p.build()).unwrap_err().contains("method"));
}

#[test]
fn missing_nodes_are_named() {
    let no_timer = Pi4 {
        timer: false,
        ..Pi4::default()
    };
    assert!(
        platform(&no_timer.build())
            .unwrap_err()
            .contains("generic timer")
    );
    let no_uart = Pi4 {
        uart: false,
        ..Pi4::default()
    };
    assert!(platform(&no_uart.build()).unwrap_err().contains("PL011"));
    // A board with its own console (Xen's console_io) reads no PL011, present or not.
    let no_uart = Pi4 {
        uart: false,
        ..Pi4::default()
    };
    for tree in [no_uart.build(), Pi4::default().build()] {
        let fdt = Fdt::new(&tree).unwrap();
        let p = ArmPlatform::from_fdt_with(&fdt, false).unwrap();
        assert_eq!(p.uart, None);
    }
}

#[test]
fn unknown_gic_is_refused() {
    let p = Pi4 {
        gic_compatible: "brcm,bcm2836-armctrl-ic",
        ..Pi4::default()
    };
    let blob = p.build();
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(
        ArmPlatform::from_fdt(&fdt).unwrap_err(),
        PlatformError::UnknownInterruptController {
            compatible: "brcm,bcm2836-armctrl-ic"
        }
    );
}

#[test]
fn wrong_sizes_and_untranslatable_addresses() {
    let p = Pi4 {
        uart_reg_cells: 1,
        ..Pi4::default()
    };
    let e = platform(&p.build()).unwrap_err();
    assert!(e.contains("'reg'") && e.contains("whole number"), "{e}");
    let p = Pi4 {
        soc_ranges: false,
        ..Pi4::default()
    };
    let e = platform(&p.build()).unwrap_err();
    assert!(e.contains("cannot be translated"), "{e}");
}

#[test]
fn no_usable_memory() {
    // The Pi 4's own tree before the firmware fills it in: `reg = <0 0 0>`.
    let p = Pi4 {
        memory_bytes: 0,
        high_memory: false,
        ..Pi4::default()
    };
    let blob = p.build();
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(
        ArmPlatform::from_fdt(&fdt).unwrap_err(),
        PlatformError::NoUsableMemory
    );
    // Only the reserved first page: still nothing usable.
    let p = Pi4 {
        memory_bytes: 0x1000,
        high_memory: false,
        ..Pi4::default()
    };
    assert!(platform(&p.build()).unwrap_err().contains("no usable RAM"));
    // The second memory node alone is enough.
    let p = Pi4 {
        memory_bytes: 0,
        ..Pi4::default()
    };
    assert!(platform(&p.build()).is_ok());
}

fn set_header(blob: &mut [u8], word: usize, value: u32) {
    blob[word * 4..word * 4 + 4].copy_from_slice(&value.to_be_bytes());
}

#[test]
fn header_corruption() {
    let good = Pi4::default().build();
    assert!(matches!(Fdt::new(&[]), Err(FdtError::Truncated { .. })));
    assert!(matches!(
        Fdt::new(&good[..39]),
        Err(FdtError::Truncated { .. })
    ));
    assert!(matches!(
        Fdt::new(&good[..good.len() - 1]),
        Err(FdtError::Truncated { .. })
    ));
    let mut b = good.clone();
    b[0] = 0xde;
    assert!(matches!(Fdt::new(&b), Err(FdtError::BadMagic { .. })));
    let mut b = good.clone();
    set_header(&mut b, 1, 8 << 20);
    assert!(matches!(Fdt::new(&b), Err(FdtError::BadTotalSize { .. })));
    let mut b = good.clone();
    set_header(&mut b, 1, 12);
    assert!(matches!(Fdt::new(&b), Err(FdtError::BadTotalSize { .. })));
    let mut b = good.clone();
    set_header(&mut b, 5, 16);
    assert!(matches!(
        Fdt::new(&b),
        Err(FdtError::UnsupportedVersion { .. })
    ));
    let mut b = good.clone();
    set_header(&mut b, 2, 0x10_0000); // off_dt_struct beyond the blob
    assert!(matches!(Fdt::new(&b), Err(FdtError::BadBlock { .. })));
    let mut b = good.clone();
    set_header(&mut b, 9, u32::MAX); // size_dt_struct
    assert!(matches!(Fdt::new(&b), Err(FdtError::BadBlock { .. })));
    let mut b = good.clone();
    set_header(&mut b, 2, 42); // misaligned structure block
    assert!(matches!(Fdt::new(&b), Err(FdtError::BadBlock { .. })));
    assert_eq!(fdt::total_size(&good[..40]), Ok(good.len()));
}

#[test]
fn structure_corruption() {
    // Unterminated reservation list.
    let mut b = Builder::default();
    b.begin("").end();
    let mut blob = b.finish();
    blob[40..56].copy_from_slice(&[0xff; 16]); // terminator overwritten
    let last = (blob.len() - 16) as u32;
    set_header(&mut blob, 4, last);
    assert!(Fdt::new(&blob).is_err());

    // An END_NODE too many.
    let mut b = Builder::default();
    b.begin("").end().end();
    assert!(matches!(
        Fdt::new(&b.finish()),
        Err(FdtError::BadToken { .. })
    ));
    // A node left open.
    let mut b = Builder::default();
    b.begin("").begin("child").end();
    assert!(matches!(
        Fdt::new(&b.finish()),
        Err(FdtError::BadStructure { .. })
    ));
    // Two roots.
    let mut b = Builder::default();
    b.begin("").end().begin("").end();
    assert!(matches!(
        Fdt::new(&b.finish()),
        Err(FdtError::BadStructure { .. })
    ));
    // Too deep.
    let mut b = Builder::default();
    b.begin("");
    for i in 0..fdt::MAX_DEPTH {
        b.begin(&format!("n{i}"));
    }
    for _ in 0..=fdt::MAX_DEPTH {
        b.end();
    }
    assert_eq!(Fdt::new(&b.finish()).unwrap_err(), FdtError::TooDeep);
    // An unknown token.
    let mut b = Builder::default();
    b.begin("").u32(0x77).end();
    assert!(matches!(
        Fdt::new(&b.finish()),
        Err(FdtError::BadToken { token: 0x77, .. })
    ));
    // A property longer than the block.
    let mut b = Builder::default();
    b.begin("").u32(3).u32(0x1000).u32(0).end();
    assert!(matches!(
        Fdt::new(&b.finish()),
        Err(FdtError::BadProperty { .. })
    ));
    // A property name offset outside the strings block.
    let mut b = Builder::default();
    b.begin("").prop("x", &[]).end();
    let mut blob = b.finish();
    let struct_off = u32::from_be_bytes(blob[8..12].try_into().unwrap()) as usize;
    // begin(""): token + 4 bytes of name padding; then PROP, len, nameoff.
    blob[struct_off + 16..struct_off + 20].copy_from_slice(&0x4000u32.to_be_bytes());
    assert!(matches!(Fdt::new(&blob), Err(FdtError::BadName { .. })));
    // A node name without its NUL.
    let mut b = Builder::default();
    b.begin("");
    b.u32(1);
    b.structs.extend_from_slice(b"abcd");
    let mut blob = b.finish();
    let n = blob.len();
    // Make the strings block empty and the struct block end right after the name bytes.
    set_header(&mut blob, 9, (n - struct_off) as u32);
    set_header(&mut blob, 8, 0);
    set_header(&mut blob, 3, n as u32);
    assert!(Fdt::new(&blob).is_err());
}

/// xorshift64*: deterministic pseudo-random corruption.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Parses as far as possible; must never panic.
fn parse_everything(blob: &[u8]) {
    if let Ok(fdt) = Fdt::new(blob) {
        let _ = ArmPlatform::from_fdt(&fdt);
        let _ = virtio_mmio(&fdt).count();
        for n in fdt.nodes() {
            let _ = n.properties().count();
            let _ = n.parent().map(|p| p.name());
            let _ = n.children().count();
        }
        let _ = fdt.find_path("/soc/serial@7e201000");
        let _ = fdt.memory_reservations().count();
    }
}

#[test]
fn truncated_blocks_never_panic() {
    for good in [Pi4::default().build(), VIRT_GICV3.to_vec()] {
        let struct_off = u32::from_be_bytes(good[8..12].try_into().unwrap()) as usize;
        let struct_len = u32::from_be_bytes(good[36..40].try_into().unwrap()) as usize;
        for cut in 0..struct_len {
            let mut b = good.clone();
            set_header(&mut b, 9, cut as u32);
            assert!(
                Fdt::new(&b).is_err(),
                "a cut structure block at {cut} passed"
            );
            parse_everything(&b);
        }
        for cut in 0..good.len() {
            parse_everything(&good[..cut]);
        }
        let _ = struct_off;
    }
}

#[test]
fn random_corruption_never_panics() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for good in [
        Pi4::default().build(),
        VIRT_GICV2.to_vec(),
        VIRT_GICV3.to_vec(),
    ] {
        for _ in 0..3000 {
            let mut b = good.clone();
            for _ in 0..1 + rng.next() % 4 {
                let at = (rng.next() % b.len() as u64) as usize;
                b[at] = match rng.next() % 4 {
                    0 => 0,
                    1 => 0xff,
                    2 => b[at] ^ (1 << (rng.next() % 8)),
                    _ => rng.next() as u8,
                };
            }
            parse_everything(&b);
        }
    }
}

#[test]
fn paths_phandles_and_children() {
    let blob = Pi4::default().build();
    let fdt = Fdt::new(&blob).unwrap();
    let uart = fdt.find_path("/soc/serial@7e201000").unwrap();
    assert_eq!(uart.parent().unwrap().name(), "soc");
    assert_eq!(
        fdt.find_path("/soc/serial").unwrap().name(),
        "serial@7e201000"
    );
    assert!(fdt.find_path("/nope").is_none());
    assert_eq!(
        fdt.find_phandle(1).unwrap().name(),
        "interrupt-controller@40041000"
    );
    let soc = fdt.find_path("/soc").unwrap();
    let names: Vec<_> = soc.children().map(|c| c.name()).collect();
    assert_eq!(
        names,
        [
            "serial@7e201000",
            "serial@7e201400",
            "interrupt-controller@40041000"
        ]
    );
    assert_eq!(fdt.memory_reservations().collect::<Vec<_>>(), [(0, 0x1000)]);
    // The disabled UART is never chosen.
    assert_eq!(
        fdt.find_compatible(&["arm,pl011"]).unwrap().name(),
        "serial@7e201000"
    );
}

fn with_cpus(ac: u32, sc: u32, nodes: Vec<CpuNode>, psci: Option<&'static str>) -> Vec<u8> {
    Pi4 {
        cpus: Some((ac, sc, nodes)),
        psci_method: psci,
        ..Pi4::default()
    }
    .build()
}

#[test]
fn psci_cpus_are_numbered_from_the_boot_cpu() {
    // Two clusters, 2-cell MPIDRs (Aff3 in the high cell), booted on the third CPU.
    let mpidrs = [0x0, 0x1, 0x100, 0x1_0000_0101];
    let blob = with_cpus(
        2,
        0,
        mpidrs.iter().map(|&m| CpuNode::psci(m)).collect(),
        Some("hvc"),
    );
    let p = platform(&blob).unwrap();
    assert_eq!(p.psci, Some(PsciConduit::Hvc));
    assert_eq!(p.cpus.as_slice().len(), 4);
    assert!(
        p.cpus
            .as_slice()
            .iter()
            .all(|c| c.enable == EnableMethod::Psci)
    );
    let order: Vec<u64> = p.cpus.numbered(0x100).map(|c| c.mpidr).collect();
    assert_eq!(order, [0x100, 0x0, 0x1, 0x1_0000_0101]);
    assert_eq!(p.cpus.count(0x100), 4);
    // MPIDR bits outside the affinity fields (U, MT, RES1 bit 31) are ignored in lookups.
    assert_eq!(p.cpus.find(0x8000_0100).map(|c| c.mpidr), Some(0x100));
    // A boot CPU the tree does not list is still cpu0, and counted.
    let order: Vec<u64> = p.cpus.numbered(0x200).map(|c| c.mpidr).collect();
    assert_eq!(order, [0x200, 0x0, 0x1, 0x100, 0x1_0000_0101]);
    assert_eq!(p.cpus.count(0x200), 5);
}

#[test]
fn disabled_cpus_and_other_nodes_are_skipped() {
    let mut off = CpuNode::psci(1);
    off.status = Some("disabled");
    let mut not_cpu = CpuNode::psci(2);
    not_cpu.device_type = "l2-cache";
    let blob = with_cpus(2, 0, vec![CpuNode::psci(0), off, not_cpu], Some("smc"));
    let p = platform(&blob).unwrap();
    assert_eq!(p.cpus.listed(), 1);
    assert_eq!(p.cpus.as_slice()[0].mpidr, 0);
    // No /cpus at all: the boot CPU alone.
    let blob = with_cpus(1, 0, vec![], None);
    let p = platform(&blob).unwrap();
    assert_eq!(p.cpus.as_slice(), []);
    assert_eq!(p.cpus.count(0), 1);
    // No enable-method: kept, with nothing to start it by.
    let mut bare = CpuNode::spin(1, 0xe0);
    bare.method = None;
    bare.release = None;
    let blob = with_cpus(1, 0, vec![CpuNode::spin(0, 0xd8), bare], None);
    let p = platform(&blob).unwrap();
    assert_eq!(p.cpus.as_slice()[1].enable, EnableMethod::None);
}

#[test]
fn more_cpus_than_supported_are_counted_not_kept() {
    let n = MAX_CPUS + 6;
    let nodes = (0..n as u64)
        .map(|i| CpuNode::psci(((i / 16) << 8) | (i % 16)))
        .collect();
    let blob = with_cpus(2, 0, nodes, Some("hvc"));
    let p = platform(&blob).unwrap();
    assert_eq!(p.cpus.listed(), n);
    assert_eq!(p.cpus.as_slice().len(), MAX_CPUS);
    assert_eq!(p.cpus.as_slice()[MAX_CPUS - 1].mpidr, 0x3 << 8 | 0xf);
    assert_eq!(p.cpus.numbered(0).count(), MAX_CPUS);
}

#[test]
fn malformed_cpu_nodes_are_refused_by_name() {
    let cases: Vec<(u32, u32, CpuNode, Option<&str>, &str)> = vec![
        (
            1,
            0,
            CpuNode {
                reg: vec![],
                ..CpuNode::spin(1, 0xe0)
            },
            None,
            "'reg' is missing",
        ),
        (
            1,
            0,
            CpuNode {
                reg: vec![0, 1],
                ..CpuNode::spin(1, 0xe0)
            },
            None,
            "'reg' is missing or not one MPIDR",
        ),
        (
            1,
            1,
            CpuNode {
                reg: vec![1, 0],
                ..CpuNode::spin(1, 0xe0)
            },
            None,
            "'#size-cells' is not 0",
        ),
        (
            1,
            0,
            CpuNode::spin(0x8000_0001, 0xe0),
            None,
            "outside the MPIDR affinity",
        ),
        (
            1,
            0,
            CpuNode::spin(0, 0xe0),
            None,
            "repeats another CPU's MPIDR",
        ),
        (
            1,
            0,
            CpuNode {
                release: None,
                ..CpuNode::spin(1, 0xe0)
            },
            None,
            "'cpu-release-addr' is missing",
        ),
        (
            1,
            0,
            CpuNode {
                release: Some(vec![0, 0, 0xe0]),
                ..CpuNode::spin(1, 0xe0)
            },
            None,
            "'cpu-release-addr' is missing or not 1 or 2 cells",
        ),
        (1, 0, CpuNode::spin(1, 0xe4), None, "not 8-byte aligned"),
        (1, 0, CpuNode::spin(1, 0), None, "'cpu-release-addr' is 0"),
        (
            1,
            0,
            CpuNode {
                method: Some("acpi-parking"),
                ..CpuNode::spin(1, 0xe0)
            },
            None,
            "neither \"psci\" nor \"spin-table\"",
        ),
        (
            2,
            0,
            CpuNode::psci(1),
            None,
            "is \"psci\" but the devicetree has no psci node",
        ),
    ];
    for (ac, sc, bad, psci, want) in cases {
        let first = if ac == 2 {
            CpuNode::psci(0)
        } else {
            CpuNode::spin(0, 0xd8)
        };
        let blob = with_cpus(ac, sc, vec![first, bad], psci);
        let e = platform(&blob).unwrap_err();
        assert!(e.contains(want), "wanted {want:?}, got {e:?}");
        assert!(
            e.contains("cpu@") || e.contains("cpus"),
            "names the node: {e}"
        );
    }
}

#[test]
fn cpu_limit_on_the_command_line() {
    assert_eq!(cpus_from_cmdline(""), Ok(None));
    assert_eq!(cpus_from_cmdline("rhea.checker=1"), Ok(None));
    assert_eq!(cpus_from_cmdline("rhea.cpus=2 x=1"), Ok(Some(2)));
    assert_eq!(cpus_from_cmdline("rhea.cpus=4 rhea.cpus=1"), Ok(Some(1)));
    for bad in [
        "rhea.cpus=0",
        "rhea.cpus=two",
        "rhea.cpus=",
        "rhea.cpus=65",
        "rhea.cpus=1 rhea.cpus=x",
    ] {
        let e = cpus_from_cmdline(bad).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("expected a whole number from 1 to 64"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn psci_errors_have_their_names() {
    assert_eq!(psci_error_name(-2), "INVALID_PARAMETERS");
    assert_eq!(psci_error_name(-4), "ALREADY_ON");
    assert_eq!(psci_error_name(-9), "INVALID_ADDRESS");
    assert_eq!(psci_error_name(-42), "an unknown PSCI error");
}

/// The 32 virtio-mmio transports QEMU's virt machine lists: 0x200 bytes each from 0x0a00_0000,
/// SPI 16 + i (INTID 48 + i), rising edge, DMA-coherent.
#[test]
fn qemu_virt_virtio_mmio_transports() {
    for blob in [VIRT_GICV2, VIRT_GICV3] {
        let fdt = Fdt::new(blob).unwrap();
        let mut all: Vec<VirtioMmio> = virtio_mmio(&fdt).map(Result::unwrap).collect();
        assert_eq!(all.len(), 32);
        all.sort_by_key(|v| v.regs.base);
        for (i, v) in all.iter().enumerate() {
            let base = 0x0a00_0000 + 0x200 * i as u64;
            assert_eq!(
                *v,
                VirtioMmio {
                    node: v.node,
                    regs: MmioRange { base, len: 0x200 },
                    intid: 48 + i as u32,
                    trigger: SpiTrigger::EdgeRising,
                    dma_coherent: true,
                }
            );
            assert_eq!(v.node, format!("virtio_mmio@{base:x}"));
            assert_eq!(v.unsupported(), None);
        }
    }
    // A tree without any (the Pi's) has none.
    let pi = Pi4::default().build();
    assert_eq!(virtio_mmio(&Fdt::new(&pi).unwrap()).count(), 0);
}

/// A node's properties: (name, cells).
type Props = Vec<(&'static str, Vec<u32>)>;
/// Nodes by name.
type Nodes<'n> = [(&'n str, Props)];
/// What [`virtio_mmio`] returned for each node, errors as their messages.
type Parsed = Vec<Result<VirtioMmio<'static>, String>>;
/// A property change for [`virtio_node`].
type Change = (&'static str, &'static [u32]);

/// A tree with a GIC (phandle 1, the root's interrupt parent), another interrupt controller
/// (phandle 2) and the given `virtio,mmio` nodes: (name, extra properties as (name, cells)).
fn virtio_tree(nodes: &Nodes<'_>) -> Vec<u8> {
    let mut b = Builder::default();
    b.begin("")
        .cells("#address-cells", &[2])
        .cells("#size-cells", &[2])
        .cells("interrupt-parent", &[1]);
    b.begin("intc@8000000")
        .prop("compatible", b"arm,cortex-a15-gic\0")
        .prop("interrupt-controller", &[])
        .cells("#interrupt-cells", &[3])
        .cells(
            "reg",
            &[0, 0x0800_0000, 0, 0x1_0000, 0, 0x0801_0000, 0, 0x1_0000],
        )
        .cells("phandle", &[1])
        .end();
    b.begin("gpio-intc")
        .prop("compatible", b"vendor,gpio-irq\0")
        .prop("interrupt-controller", &[])
        .cells("#interrupt-cells", &[3])
        .cells("phandle", &[2])
        .end();
    for (name, props) in nodes {
        b.begin(name);
        for (p, cells) in props {
            match *p {
                "compatible" | "status" => {
                    let s = if *p == "compatible" {
                        "virtio,mmio"
                    } else {
                        "disabled"
                    };
                    b.string(p, s);
                }
                _ => {
                    b.cells(p, cells);
                }
            }
        }
        b.end();
    }
    b.end();
    b.finish()
}

/// A well-formed node's properties at `base` with SPI `spi`, then `changes` applied (a
/// property replaced, or removed when its cells are `[u32::MAX]`).
fn virtio_node(base: u32, spi: u32, changes: &[Change]) -> Props {
    let mut props = vec![
        ("compatible", vec![]),
        ("dma-coherent", vec![]),
        ("interrupts", vec![0, spi, 1]),
        ("reg", vec![0, base, 0, 0x200]),
    ];
    for (name, cells) in changes {
        props.retain(|(p, _)| p != name);
        if *cells != [u32::MAX] {
            props.push((name, cells.to_vec()));
        }
    }
    props
}

/// What [`virtio_mmio`] returns for a [`virtio_tree`] of `nodes`.
fn virtio_results(nodes: &Nodes<'_>) -> Parsed {
    let blob: &'static [u8] = Box::leak(virtio_tree(nodes).into_boxed_slice());
    virtio_mmio(&Fdt::new(blob).unwrap())
        .map(|r| r.map_err(|e| e.to_string()))
        .collect()
}

#[test]
fn well_formed_virtio_mmio_nodes() {
    let r = virtio_results(&[
        ("virtio_mmio@a000000", virtio_node(0x0a00_0000, 16, &[])),
        // Disabled: skipped.
        (
            "virtio_mmio@a000200",
            virtio_node(0x0a00_0200, 17, &[("status", &[])]),
        ),
        // Level-high and not coherent: well-formed, but Rhea says why it will not drive it.
        (
            "virtio_mmio@a000400",
            virtio_node(
                0x0a00_0400,
                18,
                &[("interrupts", &[0, 18, 4]), ("dma-coherent", &[u32::MAX])],
            ),
        ),
        // Its own interrupt-parent naming the GIC; a one-page window.
        (
            "virtio_mmio@a001000",
            virtio_node(
                0x0a00_1000,
                19,
                &[
                    ("interrupt-parent", &[1]),
                    ("reg", &[0, 0x0a00_1000, 0, 0x1000]),
                ],
            ),
        ),
    ]);
    let ok: Vec<VirtioMmio> = r.into_iter().map(Result::unwrap).collect();
    assert_eq!(ok.len(), 3);
    assert_eq!(
        ok[0],
        VirtioMmio {
            node: "virtio_mmio@a000000",
            regs: MmioRange {
                base: 0x0a00_0000,
                len: 0x200
            },
            intid: 48,
            trigger: SpiTrigger::EdgeRising,
            dma_coherent: true,
        }
    );
    assert_eq!(ok[1].trigger, SpiTrigger::LevelHigh);
    assert!(!ok[1].dma_coherent);
    assert!(ok[1].unsupported().unwrap().contains("not dma-coherent"));
    let level = VirtioMmio {
        dma_coherent: true,
        ..ok[1]
    };
    assert!(level.unsupported().unwrap().contains("level-triggered"));
    assert_eq!(ok[2].intid, 51);
    assert_eq!(ok[2].regs.len, 0x1000);
}

#[test]
fn malformed_virtio_mmio_nodes_are_refused_by_name() {
    const NONE: &[u32] = &[u32::MAX];
    let cases: &[(&[Change], &str)] = &[
        (&[("reg", NONE)], "'reg' is missing"),
        (
            &[("reg", &[0, 0x0a00_0000, 0])],
            "not a whole number of entries",
        ),
        (&[("reg", &[0, 0x0a00_0000, 0, 0])], "zero-length"),
        (
            &[("reg", &[0, 0x0a00_0000, 0, 0x80])],
            "outside 0x100..=0x100000",
        ),
        (
            &[("reg", &[0, 0x0a00_0000, 1, 0])],
            "outside 0x100..=0x100000",
        ),
        (
            &[("reg", &[0, 0x0a00_0002, 0, 0x200])],
            "not 4-byte aligned",
        ),
        (
            &[("reg", &[0xffff_ffff, 0xffff_ff00, 0, 0x200])],
            "wraps past 2^64",
        ),
        (
            &[("reg", &[0, 0x0a00_0000, 0, 0x200, 0, 0x0b00_0000, 0, 0x200])],
            "more than one register range",
        ),
        (&[("interrupts", NONE)], "'interrupts' is missing"),
        (&[("interrupts", &[0, 16])], "exactly one 3-cell"),
        (
            &[("interrupts", &[0, 16, 1, 0, 17, 1])],
            "exactly one 3-cell",
        ),
        (&[("interrupts", &[1, 3, 1])], "names a PPI"),
        (&[("interrupts", &[2, 3, 1])], "other than SPI"),
        (&[("interrupts", &[0, 988, 1])], "out of range"),
        (&[("interrupts", &[0, 16, 0])], "no trigger type"),
        (
            &[("interrupts", &[0, 16, 2])],
            "falling edge or an active-low",
        ),
        (
            &[("interrupts", &[0, 16, 8])],
            "falling edge or an active-low",
        ),
        (&[("interrupts", &[0, 16, 3])], "unknown trigger flags"),
        (&[("interrupt-parent", &[2])], "not the GIC"),
        (&[("interrupt-parent", &[7])], "no interrupt parent"),
    ];
    for (changes, why) in cases {
        let r = virtio_results(&[
            ("virtio_mmio@a000000", virtio_node(0x0a00_0000, 16, changes)),
            // A good node after the bad one is still returned.
            ("virtio_mmio@a000200", virtio_node(0x0a00_0200, 17, &[])),
        ]);
        assert_eq!(r.len(), 2, "{changes:?}");
        let e = r[0].as_ref().unwrap_err();
        assert!(e.contains(why), "{changes:?}: {e}");
        assert!(e.contains("virtio_mmio@a000000"), "names the node: {e}");
        assert_eq!(r[1].as_ref().unwrap().intid, 49, "{changes:?}");
    }
}

#[test]
fn overlapping_virtio_mmio_windows_are_refused() {
    let r = virtio_results(&[
        ("virtio_mmio@a000000", virtio_node(0x0a00_0000, 16, &[])),
        ("virtio_mmio@a000100", virtio_node(0x0a00_0100, 17, &[])),
        ("virtio_mmio@a000200", virtio_node(0x0a00_0200, 18, &[])),
    ]);
    assert!(r[0].is_ok() && r[2].is_ok(), "{r:?}");
    let e = r[1].as_ref().unwrap_err();
    assert!(
        e.contains("virtio_mmio@a000100") && e.contains("overlaps"),
        "{e}"
    );
}

#[test]
fn more_virtio_mmio_transports_than_kept_are_refused() {
    let nodes: Vec<(String, Props)> = (0..MAX_VIRTIO_MMIO as u32 + 2)
        .map(|i| {
            let base = 0x0a00_0000 + 0x200 * i;
            (format!("virtio_mmio@{base:x}"), virtio_node(base, i, &[]))
        })
        .collect();
    let refs: Vec<(&str, Props)> = nodes.iter().map(|(n, p)| (n.as_str(), p.clone())).collect();
    let r = virtio_results(&refs);
    assert_eq!(r.iter().filter(|r| r.is_ok()).count(), MAX_VIRTIO_MMIO);
    assert!(
        r[MAX_VIRTIO_MMIO]
            .as_ref()
            .unwrap_err()
            .contains("more than the 64")
    );
}

/// A Xen `hypervisor` node as Xen writes it for a guest with PV interfaces (`xen,xen`; the
/// event-channel PPI 15 = INTID 31, level-low, all CPUs), read through [`node_interrupt`].
#[test]
fn node_interrupt_reads_a_xen_hypervisor_node() {
    let tree = |interrupts: &[u32]| {
        let mut b = Builder::default();
        b.begin("")
            .cells("#address-cells", &[2])
            .cells("#size-cells", &[2]);
        b.begin("hypervisor")
            .prop("compatible", b"xen,xen-4.17\0xen,xen\0")
            .cells("reg", &[0, 0x3800_0000, 0, 0x100_0000])
            .cells("interrupts", interrupts)
            .end();
        b.end();
        b.finish()
    };
    let blob = tree(&[1, 15, 0xf08]);
    let fdt = Fdt::new(&blob).unwrap();
    let node = fdt.find_compatible(&["xen,xen"]).unwrap();
    let irq = node_interrupt(&node, 0).unwrap();
    assert_eq!(irq.intid, 31);
    assert_eq!(irq.trigger, Trigger::Level);
    assert!(node_interrupt(&node, 1).is_err(), "only one interrupt");

    let blob = tree(&[1, 16, 0xf08]);
    let fdt = Fdt::new(&blob).unwrap();
    let e = node_interrupt(&fdt.find_compatible(&["xen,xen"]).unwrap(), 0).unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
}

/// `#address-cells` and `#size-cells` whose sum does not fit a `u32`: the size of a `reg` entry
/// overflowed (a panic) while looking for RAM and for virtio-mmio transports (found by `cargo
/// xtask fuzz fdt`: QEMU's tree with the root's `#size-cells` made 0xffffffff). Now the cell
/// counts are refused by name.
#[test]
fn cell_counts_whose_sum_overflows_are_refused() {
    for (ac, sc) in [
        (0xffff_ffff, 1),
        (1, 0xffff_ffff),
        (0xffff_ffff, 0xffff_ffff),
    ] {
        let mut b = Builder::default();
        b.begin("")
            .cells("#address-cells", &[ac])
            .cells("#size-cells", &[sc])
            .begin("memory@40000000")
            .string("device_type", "memory")
            .cells("reg", &[0, 0x4000_0000, 0, 0x800_0000])
            .end()
            .begin("virtio_mmio@a000000")
            .string("compatible", "virtio,mmio")
            .cells("reg", &[0, 0xa00_0000, 0, 0x200])
            .cells("interrupts", &[0, 16, 1])
            .end()
            .end();
        let blob = b.finish();
        let fdt = Fdt::new(&blob).unwrap();
        assert!(ArmPlatform::from_fdt(&fdt).is_err(), "{ac:#x} + {sc:#x}");
        assert!(virtio_mmio(&fdt).all(|t| t.is_err()), "{ac:#x} + {sc:#x}");
    }
}
