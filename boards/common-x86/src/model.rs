//! A model of the PC's timers on a simulated time line, shared by this crate's calibration
//! tests: the 8254 PIT and port 0x61, an HPET (memory-mapped) and an ACPI PM timer (a port),
//! with a TSC driven by the same time line. Every port access, register access and counter read
//! advances time by its cost, so waits end and bounds can be checked in simulated time.

use crate::access::Mmio32;
use crate::pit::{
    CW_ACCESS_LOHI, CW_BINARY, CW_LATCH, CW_MODE0, PIT_HZ, PORT_B_GATE2, PortIo, port,
};
use rhea_timers::CycleCounter;
use std::sync::Mutex;

const PS_PER_S: u128 = 1_000_000_000_000;

/// What sits behind the PIT's ports.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Wiring {
    /// A PC: PIT and port 0x61.
    Pc,
    /// QEMU microvm: PIT, no port 0x61 (reads 0xff).
    NoPortB,
    /// Nothing: every port reads `value`.
    Dead { value: u8 },
}

#[derive(Clone, Copy, Default, Debug)]
struct Channel {
    initial: u16,
    loaded_at_ps: Option<u64>,
    low_byte: Option<u8>,
    latched: Option<u16>,
    read_high_next: bool,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) now_ps: u64,
    pub(crate) tsc_hz: u64,
    pub(crate) io_cost_ps: u64,
    pub(crate) tsc_cost_ps: u64,
    /// Counter reads return this instead of the time line's TSC.
    pub(crate) stuck_tsc: Option<u64>,
    /// Stall the machine once for `.1` ps when time first passes `.0`.
    pub(crate) stall: Option<(u64, u64)>,
    /// `(period, length)` in ps: time jumps by `length` at every multiple of `period` (a
    /// host that keeps descheduling the vCPU).
    pub(crate) periodic_stall: Option<(u64, u64)>,
    pub(crate) wiring: Wiring,
    pub(crate) port_accesses: u64,
    gate2: bool,
    channels: [Channel; 3],
    /// An HPET behind [`Mmio32`], if the machine has one.
    pub(crate) hpet: Option<HpetModel>,
    /// An ACPI PM timer behind [`PortIo::inl`], if the machine has one.
    pub(crate) pm_timer: Option<PmTimerModel>,
    /// Register reads and writes of the HPET.
    pub(crate) mmio_accesses: u64,
}

/// An HPET (IA-PC HPET 1.0a §2.3): the capabilities, the configuration's ENABLE_CNF and the
/// main counter; no comparators.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HpetModel {
    /// General capabilities, bits 31:0 (revision, timer count, COUNT_SIZE_CAP, vendor).
    pub(crate) caps_low: u32,
    /// COUNTER_CLK_PERIOD (capabilities bits 63:32), femtoseconds.
    pub(crate) period_fs: u32,
    /// ENABLE_CNF.
    pub(crate) enabled: bool,
    /// The main counter when it was last enabled.
    pub(crate) count_base: u64,
    pub(crate) enabled_at_ps: u64,
    /// The counter ignores ENABLE_CNF and never moves (a broken part, or nothing behind the
    /// address that happens to read like one).
    pub(crate) dead: bool,
}

impl HpetModel {
    /// QEMU's HPET: 100 MHz, 64-bit counter, 3 timers, halted; the counter starts at `count`.
    pub(crate) fn qemu(count: u64) -> HpetModel {
        HpetModel {
            caps_low: 0x8086_a201,
            period_fs: 10_000_000,
            enabled: false,
            count_base: count,
            enabled_at_ps: 0,
            dead: false,
        }
    }

    fn is_64bit(&self) -> bool {
        self.caps_low & (1 << 13) != 0
    }

    fn count(&self, now_ps: u64) -> u64 {
        let mut count = self.count_base;
        if self.enabled && !self.dead {
            let ticks = u128::from(now_ps - self.enabled_at_ps) * 1000 / u128::from(self.period_fs);
            count = count.wrapping_add(ticks as u64);
        }
        if self.is_64bit() {
            count
        } else {
            count & 0xffff_ffff
        }
    }
}

/// The ACPI PM timer (ACPI 6.5 §4.8.3.3): 3.579545 MHz, 24 or 32 bits, read at one port.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PmTimerModel {
    pub(crate) port: u16,
    pub(crate) bits: u32,
    /// The count at time 0 (to place a wrap where a test wants it).
    pub(crate) offset: u64,
    /// The count never moves.
    pub(crate) dead: bool,
}

/// The PM timer's rate.
pub(crate) const PM_TIMER_HZ: u128 = 3_579_545;

#[derive(Debug)]
pub(crate) struct Machine(pub(crate) Mutex<State>);

impl Machine {
    pub(crate) fn new(tsc_hz: u64, wiring: Wiring) -> Machine {
        Machine(Mutex::new(State {
            now_ps: 1_000_000_000, // 1 ms in: the TSC is not zero
            tsc_hz,
            io_cost_ps: 1_000_000, // 1 µs, a VM exit
            tsc_cost_ps: 20_000,
            stuck_tsc: None,
            stall: None,
            periodic_stall: None,
            wiring,
            port_accesses: 0,
            gate2: false,
            channels: [Channel::default(); 3],
            hpet: None,
            pm_timer: None,
            mmio_accesses: 0,
        }))
    }

    /// With an HPET.
    pub(crate) fn with_hpet(self, hpet: HpetModel) -> Machine {
        self.with(|s| s.hpet = Some(hpet));
        self
    }

    /// With an ACPI PM timer.
    pub(crate) fn with_pm_timer(self, pm: PmTimerModel) -> Machine {
        self.with(|s| s.pm_timer = Some(pm));
        self
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }
}

impl State {
    fn advance(&mut self, ps: u64) {
        self.now_ps += ps;
        if let Some((at, len)) = self.stall
            && self.now_ps >= at
        {
            self.now_ps += len;
            self.stall = None;
        }
        if let Some((period, len)) = self.periodic_stall
            && (self.now_ps - ps) / period != self.now_ps / period
        {
            self.now_ps += len;
        }
    }

    pub(crate) fn tsc(&self) -> u64 {
        (u128::from(self.now_ps) * u128::from(self.tsc_hz) / PS_PER_S) as u64
    }

    /// PIT clocks since channel `i` was loaded, if it counts.
    fn elapsed(&self, i: usize) -> Option<u64> {
        let loaded = self.channels[i].loaded_at_ps?;
        Some((u128::from(self.now_ps - loaded) * u128::from(PIT_HZ) / PS_PER_S) as u64)
    }

    fn count(&self, i: usize) -> u16 {
        let c = &self.channels[i];
        match self.elapsed(i) {
            Some(e) => (u64::from(c.initial).wrapping_sub(e) & 0xffff) as u16,
            None => c.initial,
        }
    }

    fn out(&self, i: usize) -> bool {
        let initial = match self.channels[i].initial {
            0 => 0x1_0000,
            n => u64::from(n),
        };
        self.elapsed(i).is_some_and(|e| e >= initial)
    }

    fn has_port_b(&self) -> bool {
        self.wiring == Wiring::Pc
    }
}

impl CycleCounter for Machine {
    fn read(&self) -> u64 {
        self.with(|s| {
            s.advance(s.tsc_cost_ps);
            s.stuck_tsc.unwrap_or_else(|| s.tsc())
        })
    }
}

impl PortIo for Machine {
    fn inb(&self, p: u16) -> u8 {
        self.with(|s| {
            s.advance(s.io_cost_ps);
            s.port_accesses += 1;
            if let Wiring::Dead { value } = s.wiring {
                return value;
            }
            match p {
                port::PORT_B if s.has_port_b() => {
                    u8::from(s.gate2)
                        | (u8::from(s.out(2)) << 5)
                        | (((s.now_ps / 15_000_000) as u8 & 1) << 4)
                }
                port::CHANNEL0 | port::CHANNEL2 => {
                    let i = usize::from(p - port::CHANNEL0);
                    let value = s.channels[i].latched.unwrap_or_else(|| s.count(i));
                    let c = &mut s.channels[i];
                    let byte = if c.read_high_next {
                        (value >> 8) as u8
                    } else {
                        value as u8
                    };
                    if c.read_high_next {
                        c.latched = None;
                    }
                    c.read_high_next = !c.read_high_next;
                    byte
                }
                _ => 0xff,
            }
        })
    }

    fn inl(&self, p: u16) -> u32 {
        self.with(|s| {
            s.advance(s.io_cost_ps);
            s.port_accesses += 1;
            match s.pm_timer {
                Some(pm) if pm.port == p => {
                    let ticks = if pm.dead {
                        0
                    } else {
                        (u128::from(s.now_ps) * PM_TIMER_HZ / PS_PER_S) as u64
                    };
                    let mask = (1u64 << pm.bits) - 1;
                    (pm.offset.wrapping_add(ticks) & mask) as u32
                }
                _ => u32::MAX,
            }
        })
    }

    fn outb(&self, p: u16, v: u8) {
        self.with(|s| {
            s.advance(s.io_cost_ps);
            s.port_accesses += 1;
            if matches!(s.wiring, Wiring::Dead { .. }) {
                return;
            }
            match p {
                port::COMMAND => {
                    let i = usize::from(v >> 6);
                    assert!(i < 3, "read-back command not modelled");
                    if v & 0x30 == CW_LATCH {
                        if s.channels[i].latched.is_none() {
                            s.channels[i].latched = Some(s.count(i));
                        }
                    } else {
                        assert_eq!(
                            v & 0x3f,
                            CW_ACCESS_LOHI | CW_MODE0 | CW_BINARY,
                            "only mode 0, lo/hi, binary"
                        );
                        s.channels[i] = Channel::default();
                    }
                }
                port::CHANNEL0 | port::CHANNEL2 => {
                    let i = usize::from(p - port::CHANNEL0);
                    let gate = i != 2 || s.gate2;
                    let now = s.now_ps;
                    let c = &mut s.channels[i];
                    match c.low_byte.take() {
                        None => c.low_byte = Some(v),
                        Some(lo) => {
                            c.initial = u16::from_le_bytes([lo, v]);
                            c.loaded_at_ps = gate.then_some(now);
                        }
                    }
                }
                port::PORT_B if s.has_port_b() => s.gate2 = v & PORT_B_GATE2 != 0,
                _ => {}
            }
        })
    }
}

impl Mmio32 for Machine {
    fn read32(&self, offset: usize) -> u32 {
        self.with(|s| {
            s.advance(s.io_cost_ps);
            s.mmio_accesses += 1;
            let now = s.now_ps;
            let Some(h) = &s.hpet else {
                return u32::MAX; // nothing decodes the address
            };
            match offset {
                0x000 => h.caps_low,
                0x004 => h.period_fs,
                0x010 => u32::from(h.enabled),
                0x014 => 0,
                0x0f0 => h.count(now) as u32,
                0x0f4 => (h.count(now) >> 32) as u32,
                _ => panic!("HPET register {offset:#x} not modelled"),
            }
        })
    }

    fn write32(&self, offset: usize, value: u32) {
        self.with(|s| {
            s.advance(s.io_cost_ps);
            s.mmio_accesses += 1;
            let now = s.now_ps;
            let Some(h) = &mut s.hpet else { return };
            match offset {
                0x010 => {
                    assert_eq!(value & !0b11, 0, "reserved configuration bits written");
                    let enable = value & 1 != 0;
                    if enable && !h.enabled {
                        h.enabled_at_ps = now;
                    } else if !enable && h.enabled {
                        h.count_base = h.count(now);
                    }
                    h.enabled = enable;
                }
                _ => panic!("HPET register {offset:#x} written ({value:#x}): not expected"),
            }
        })
    }
}
