//! Register snapshots for panics, the shared register-dump format, and frame-record backtraces
//! (AAPCS64 §6.4.6: `x29` points at a record `{previous x29, x30}`).

use core::fmt;

/// The names of x0–x30 in dumps.
pub(super) const X_NAMES: [&str; 31] = [
    "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14",
    "x15", "x16", "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27",
    "x28", "x29", "x30",
];

/// The registers at the point of capture (the panic report's, where there is no exception
/// frame). General registers hold whatever the compiler left there; `pc`, `sp` and `x29` locate
/// the capture, the system registers show the CPU's state.
#[derive(Clone, Copy, Debug)]
pub struct Registers {
    x: [u64; 31],
    sp: u64,
    pc: u64,
    daif: u64,
    sctlr: u64,
    ttbr0: u64,
}

impl rhea_hal::arch::Registers for Registers {
    /// How reports name the program counter.
    const PC_NAME: &'static str = "pc";

    /// Captures this CPU's registers here.
    #[inline(always)]
    fn capture() -> Self {
        let mut x = [0u64; 31];
        let (sp, pc, daif, sctlr, ttbr0): (u64, u64, u64, u64, u64);
        // SAFETY: the asm only stores into `x` (31 words; its address is in x0, stored first)
        // and reads SP, the PC and three system registers.
        unsafe {
            core::arch::asm!(
                "stp x0, x1, [x0, #0]",
                "stp x2, x3, [x0, #16]",
                "stp x4, x5, [x0, #32]",
                "stp x6, x7, [x0, #48]",
                "stp x8, x9, [x0, #64]",
                "stp x10, x11, [x0, #80]",
                "stp x12, x13, [x0, #96]",
                "stp x14, x15, [x0, #112]",
                "stp x16, x17, [x0, #128]",
                "stp x18, x19, [x0, #144]",
                "stp x20, x21, [x0, #160]",
                "stp x22, x23, [x0, #176]",
                "stp x24, x25, [x0, #192]",
                "stp x26, x27, [x0, #208]",
                "stp x28, x29, [x0, #224]",
                "str x30, [x0, #240]",
                "mov {sp}, sp",
                "adr {pc}, .",
                "mrs {daif}, daif",
                "mrs {sctlr}, sctlr_el1",
                "mrs {ttbr0}, ttbr0_el1",
                in("x0") x.as_mut_ptr(),
                sp = out(reg) sp,
                pc = out(reg) pc,
                daif = out(reg) daif,
                sctlr = out(reg) sctlr,
                ttbr0 = out(reg) ttbr0,
                options(nostack, preserves_flags),
            );
        }
        Self {
            x,
            sp,
            pc,
            daif,
            sctlr,
            ttbr0,
        }
    }

    /// The PC at capture.
    fn pc(&self) -> u64 {
        self.pc
    }

    /// `x29` at capture: the head of the frame-record chain.
    fn frame_pointer(&self) -> u64 {
        self.x[29]
    }

    /// SP at capture.
    fn stack_pointer(&self) -> u64 {
        self.sp
    }
}

impl fmt::Display for Registers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut all = [("", 0u64); 36];
        for (i, name) in X_NAMES.iter().enumerate() {
            all[i] = (name, self.x[i]);
        }
        all[31] = ("sp", self.sp);
        all[32] = ("pc", self.pc);
        all[33] = ("daif", self.daif);
        all[34] = ("sctlr", self.sctlr);
        all[35] = ("ttbr0", self.ttbr0);
        dump(f, &all)
    }
}

pub(crate) use crate::common::dump;
