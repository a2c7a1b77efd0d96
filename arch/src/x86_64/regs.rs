//! Register snapshots for panics, the shared register-dump format, and frame-pointer
//! backtraces.

use core::fmt;

/// The registers at the point of capture (used by the panic report, where there is no trap
/// frame). General registers hold whatever the compiler left there; RIP, RSP and RBP locate
/// the capture, the control registers show the CPU mode.
#[derive(Clone, Copy, Debug)]
pub struct Registers {
    gpr: [u64; 16],
    rip: u64,
    rflags: u64,
    cr0: u64,
    cr3: u64,
    cr4: u64,
}

const NAMES: [&str; 16] = [
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];

impl rhea_hal::arch::Registers for Registers {
    /// How reports name the program counter.
    const PC_NAME: &'static str = "rip";

    /// Captures this CPU's registers here.
    #[inline(always)]
    fn capture() -> Self {
        let mut gpr = [0u64; 16];
        let (rip, rflags): (u64, u64);
        // SAFETY: the asm only stores into `gpr` (16 words, its pointer in RAX is saved first)
        // and reads RIP and RFLAGS; pushfq/pop leave the stack as they found it.
        unsafe {
            core::arch::asm!(
                "mov [rax + 8*1], rbx",
                "mov [rax + 8*2], rcx",
                "mov [rax + 8*3], rdx",
                "mov [rax + 8*4], rsi",
                "mov [rax + 8*5], rdi",
                "mov [rax + 8*6], rbp",
                "mov [rax + 8*7], rsp",
                "mov [rax + 8*8], r8",
                "mov [rax + 8*9], r9",
                "mov [rax + 8*10], r10",
                "mov [rax + 8*11], r11",
                "mov [rax + 8*12], r12",
                "mov [rax + 8*13], r13",
                "mov [rax + 8*14], r14",
                "mov [rax + 8*15], r15",
                "lea {rip}, [rip]",
                "pushfq",
                "pop {fl}",
                in("rax") gpr.as_mut_ptr(),
                rip = out(reg) rip,
                fl = out(reg) rflags,
            );
        }
        gpr[0] = gpr.as_ptr() as u64; // RAX held the buffer address.
        Self {
            gpr,
            rip,
            rflags,
            cr0: control_register(0),
            cr3: control_register(3),
            cr4: control_register(4),
        }
    }

    /// RIP at capture.
    fn pc(&self) -> u64 {
        self.rip
    }

    /// RBP at capture: the head of the frame-pointer chain.
    fn frame_pointer(&self) -> u64 {
        self.gpr[6]
    }

    /// RSP at capture.
    fn stack_pointer(&self) -> u64 {
        self.gpr[7]
    }
}

impl fmt::Display for Registers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut all = [("", 0u64); 21];
        for (i, name) in NAMES.iter().enumerate() {
            all[i] = (name, self.gpr[i]);
        }
        all[16] = ("rip", self.rip);
        all[17] = ("rflags", self.rflags);
        all[18] = ("cr0", self.cr0);
        all[19] = ("cr3", self.cr3);
        all[20] = ("cr4", self.cr4);
        dump(f, &all)
    }
}

/// CR0, CR3 or CR4 on bare metal; 0 as a Linux process, where reading them faults.
fn control_register(n: u8) -> u64 {
    #[cfg(target_os = "none")]
    {
        use x86_64::registers::control::{Cr0, Cr3, Cr4};
        match n {
            0 => Cr0::read_raw(),
            3 => Cr3::read_raw().0.start_address().as_u64(),
            _ => Cr4::read_raw(),
        }
    }
    #[cfg(not(target_os = "none"))]
    {
        let _ = n;
        0
    }
}

pub(crate) use crate::common::dump;
