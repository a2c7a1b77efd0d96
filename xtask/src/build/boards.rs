//! The board table: the one place that says which boards exist and how to build for them.
//!
//! A board names its Rust target, its linker script, the `rhea_board` cfg value the kernel
//! crates select it with, the QEMU binary that emulates it and the QEMU machines it boots
//! on. The QEMU command line of each machine lives in `qemu.rs`.

use crate::{Result, usage};

/// One board.
#[derive(Debug)]
pub(crate) struct Board {
    /// The name used on the command line and in paths, e.g. `qemu-x86_64`.
    pub(crate) name: &'static str,
    /// The Rust target triple.
    pub(crate) target: &'static str,
    /// The linker script, relative to the workspace root.
    pub(crate) linker_script: &'static str,
    /// The linker's `-z max-page-size`: the alignment the ELF file keeps between a segment's
    /// file offset and its address. 4096 pads every page-aligned section to a page in the file
    /// too; a script that aligns addresses only (`. = ALIGN(4K)` between sections, as
    /// common-x86's does) with a small value here lets the file hold the sections back to back.
    pub(crate) max_page_size: u32,
    /// The value of `--cfg rhea_board="..."`.
    pub(crate) cfg: &'static str,
    /// The QEMU system emulator binary.
    pub(crate) qemu: &'static str,
    /// The QEMU machines this board boots on (all are tested).
    pub(crate) machines: &'static [&'static str],
    /// The machine `run` uses when `--machine` is not given.
    pub(crate) default_machine: &'static str,
    /// How an image of this board runs: under QEMU, or as a host process (LinuxU).
    pub(crate) runner: Runner,
    /// What file the build hands to the machine.
    pub(crate) image: ImageFormat,
    /// Whether `cargo xtask test` without `--board` boots it (false: only with `--board`, for
    /// boards whose runs are too slow for every CI run).
    pub(crate) default_test: bool,
    /// Whether the network stack (`rhea-net`) builds for it.
    pub(crate) network: bool,
    /// Whether its console takes input.
    pub(crate) console_input: bool,
    /// The most vCPUs `cargo xtask test` boots an app's `smp = [...]` cases with on this
    /// board (larger counts are skipped, and said so).
    pub(crate) max_test_smp: u32,
    /// The board whose boots cover this one's for kernel-only apps (`kernel-only = true`),
    /// which `cargo xtask test` then does not boot here: this board runs the same kernel
    /// after a different firmware and boot path, so only apps that exercise what the boot
    /// path decides (memory map, firmware tables, CPUs and interrupt controllers brought up,
    /// console, devices) say anything new here. `None`: every app boots.
    pub(crate) kernel_only_apps_on: Option<&'static str>,
}

/// The file a board boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ImageFormat {
    /// The linked ELF itself (QEMU's `-kernel` reads the PVH note; LinuxU runs it).
    Elf,
    /// A raw binary (`llvm-objcopy -O binary`) named `<app><suffix>`: a Linux arm64 `Image`
    /// (its header is the first bytes of the image), loaded by QEMU's `-kernel` as Linux is,
    /// which passes the devicetree in `x0` (an ELF would be loaded as a bare-metal program,
    /// without it).
    Binary { suffix: &'static str },
    /// A raw GPT disk image with an EFI system partition (`<app>.disk.img`), holding the UEFI
    /// loader that carries the ELF (`<app>.efi`, boards/pc-uefi/loader) as
    /// `\EFI\BOOT\BOOTX64.EFI`: booted by UEFI firmware from a disk, as a PC boots.
    UefiDisk,
}

/// How a board's images run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Runner {
    /// Under `qemu` on one of `machines`; exit status through `isa-debug-exit` or semihosting.
    Qemu,
    /// As an ordinary Linux process (no QEMU): the "machines" are its modes, the exit status is
    /// the process's own (0 success, 1 failure).
    Process,
}

/// Every board. Add new boards here (and their machines' command lines in `qemu.rs`).
pub(crate) const BOARDS: &[Board] = &[
    Board {
        name: "qemu-x86_64",
        target: "x86_64-unknown-none",
        linker_script: "boards/common-x86/link.ld",
        max_page_size: 16,
        cfg: "qemu-x86_64",
        qemu: "qemu-system-x86_64",
        machines: &["microvm", "q35"],
        default_machine: "q35",
        runner: Runner::Qemu,
        image: ImageFormat::Elf,
        default_test: true,
        network: true,
        console_input: true,
        max_test_smp: u32::MAX,
        kernel_only_apps_on: None,
    },
    Board {
        name: "pc-uefi",
        target: "x86_64-unknown-none",
        // The same kernel layout and entry code as every x86 board; the UEFI loader enters it
        // in long mode at `rhea_start64`.
        linker_script: "boards/common-x86/link.ld",
        max_page_size: 16,
        cfg: "pc-uefi",
        qemu: "qemu-system-x86_64",
        // q35 with OVMF (Debian's `ovmf`) as its firmware, booting the disk image.
        machines: &["q35"],
        default_machine: "q35",
        runner: Runner::Qemu,
        image: ImageFormat::UefiDisk,
        default_test: true,
        network: true,
        console_input: true,
        max_test_smp: u32::MAX,
        kernel_only_apps_on: Some("qemu-x86_64"),
    },
    Board {
        name: "linuxu",
        target: "x86_64-unknown-linux-gnu",
        linker_script: "",
        max_page_size: 4096,
        cfg: "linuxu",
        qemu: "",
        // "sim" is the deterministic simulation mode (virtual time): boards/linuxu/src/sim.rs.
        machines: &["realtime", "sim"],
        default_machine: "realtime",
        runner: Runner::Process,
        image: ImageFormat::Elf,
        default_test: true,
        network: true,
        console_input: true,
        max_test_smp: u32::MAX,
        kernel_only_apps_on: None,
    },
    Board {
        name: "qemu-aarch64",
        target: "aarch64-unknown-none",
        linker_script: "boards/qemu-aarch64/link.ld",
        max_page_size: 4096,
        cfg: "qemu-aarch64",
        qemu: "qemu-system-aarch64",
        machines: &["virt-gicv2", "virt-gicv3"],
        default_machine: "virt-gicv3",
        runner: Runner::Qemu,
        image: ImageFormat::Binary { suffix: ".img" },
        default_test: true,
        network: true,
        console_input: true,
        max_test_smp: u32::MAX,
        kernel_only_apps_on: None,
    },
    Board {
        name: "rpi4",
        target: "aarch64-unknown-none",
        linker_script: "boards/rpi4/link.ld",
        max_page_size: 4096,
        cfg: "rpi4",
        qemu: "qemu-system-aarch64",
        machines: &["raspi4b"],
        default_machine: "raspi4b",
        runner: Runner::Qemu,
        // What a Pi's firmware loads from the boot partition (`kernel8.img`).
        image: ImageFormat::Binary {
            suffix: ".kernel8.img",
        },
        default_test: true,
        network: true,
        console_input: true,
        max_test_smp: u32::MAX,
        kernel_only_apps_on: None,
    },
    Board {
        name: "xen-arm64",
        target: "aarch64-unknown-none",
        linker_script: "boards/xen-arm64/link.ld",
        max_page_size: 4096,
        cfg: "xen-arm64",
        qemu: "qemu-system-aarch64",
        // Xen 4.17 (Debian's) under QEMU `virt,virtualization=on`, Rhea as a domU Xen builds
        // from devicetree nodes, no dom0 (see xen.rs); Xen on a GICv3 (its guest gets a
        // vGICv3) or on a GICv2.
        machines: &["dom0less", "dom0less-gicv2"],
        default_machine: "dom0less",
        runner: Runner::Qemu,
        // The same Linux `Image` as qemu-aarch64's, loaded by Xen's domain builder.
        image: ImageFormat::Binary { suffix: ".img" },
        // Every boot is Xen's boot too: about half a second each under TCG.
        default_test: true,
        // Netfront through Xenbus when a toolstack creates the domain (`xen-dom0`); no PV
        // console input yet.
        network: true,
        console_input: false,
        // Xen's vCPUs are QEMU TCG threads on the host's CPUs, scheduled by Xen on top:
        // with 4 on a 2-CPU host, stalls of hundreds of milliseconds were measured (1 of ~20
        // smp-stress runs timed out a 500 ms wait); 2 vCPUs is the tested configuration.
        max_test_smp: 2,
        kernel_only_apps_on: None,
    },
    Board {
        name: "xen-x86_64",
        target: "x86_64-unknown-none",
        // The same PVH image layout as qemu-x86_64 (and its entry code).
        linker_script: "boards/common-x86/link.ld",
        max_page_size: 16,
        cfg: "xen-x86_64",
        qemu: "qemu-system-x86_64",
        // Xen 4.17 (Debian's) under QEMU TCG (`-cpu max`: nested SVM), Rhea as the PVH
        // hardware domain (`dom0=pvh`, no toolstack): see xen.rs.
        machines: &["pvh-dom0"],
        default_machine: "pvh-dom0",
        runner: Runner::Qemu,
        image: ImageFormat::Elf,
        // Every boot is Xen's boot too: about 1.3 s each under TCG.
        default_test: true,
        // Netfront through Xenbus when a toolstack creates the domain (`xen-dom0`).
        network: true,
        // The hardware domain reads Xen's serial input (VIRQ_CONSOLE, CONSOLEIO_read).
        console_input: true,
        // Xen's vCPUs are QEMU TCG threads on the host's CPUs, scheduled by Xen on top:
        // with 4 on a 2-CPU host, stalls of hundreds of milliseconds were measured (1 of ~20
        // smp-stress runs timed out a 500 ms wait); 2 vCPUs is the tested configuration.
        max_test_smp: 2,
        kernel_only_apps_on: None,
    },
];

/// Most CPUs Rhea runs (`rhea.cpus`, `rhea_hal::cmdline::keys::MAX_CPUS`).
const MAX_CPUS: u32 = 64;
/// QEMU's raspi4b: a fixed machine.
const RASPI4B_CPUS: u32 = 4;
const RASPI4B_MIB: u64 = 2048;
/// LinuxU's RAM range (`rhea.mem_mib`, `rhea_hal::cmdline::keys::MEM_MIB`).
const LINUXU_MIN_MIB: u64 = 4;
const LINUXU_MAX_MIB: u64 = 4096;

/// A `--mem` size (digits and an optional K/M/G/T suffix; no suffix is MiB, as QEMU's `-m`
/// reads it) in whole MiB; `None` if it is not a whole number of MiB.
pub(crate) fn mem_mib(mem: &str) -> Option<u64> {
    let digits = mem.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: u64 = digits
        .parse()
        .ok()
        .filter(|_| digits.bytes().all(|b| b.is_ascii_digit()))?;
    let kib = match &mem[digits.len()..] {
        "K" | "k" => n,
        "" | "M" | "m" => n.checked_mul(1 << 10)?,
        "G" | "g" => n.checked_mul(1 << 20)?,
        "T" | "t" => n.checked_mul(1 << 30)?,
        _ => return None,
    };
    (kib % 1024 == 0).then_some(kib / 1024)
}

/// The kernel command line of `run` and `build`'s boot line on `machine`: what carries
/// `--smp`, `--mem` and the simulation machine to a board that takes them there
/// ([`Board::smp_arg`], [`Board::mem_arg`], `rhea.sim=1 rhea.seed=1`), then `--append` (a
/// later argument wins, so `--append` can still override). A usage error names an option the
/// board cannot honour.
pub(crate) fn run_cmdline(board: &Board, machine: &str, opts: &crate::Options) -> Result<String> {
    if board.runner == Runner::Process && opts.accel != crate::qemu::AccelChoice::Auto {
        return usage(format!(
            "--accel: {} runs as a host process, with no accelerator to choose",
            board.name
        ));
    }
    let mem_given = opts.mem != crate::Options::default().mem;
    let smp = board.smp_arg(machine, opts.smp).or_else(usage)?;
    let mem = board
        .mem_arg(machine, &opts.mem, mem_given)
        .or_else(usage)?;
    let line = [smp, mem, Some(opts.append().to_string())]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(match board.runner {
        Runner::Process => crate::test::process_cmdline(machine, 1, &line)
            .trim()
            .to_string(),
        Runner::Qemu => line,
    })
}

/// The board used when `--board` is not given.
pub(crate) const DEFAULT_BOARD: &str = "qemu-x86_64";

/// Looks a board up by name; the error lists the valid ones.
pub(crate) fn find(name: &str) -> Result<&'static Board> {
    match BOARDS.iter().find(|b| b.name == name) {
        Some(board) => Ok(board),
        None => usage(format!(
            "unknown board `{name}`; valid boards: {}",
            names().join(", ")
        )),
    }
}

/// The names of all boards, in table order.
pub(crate) fn names() -> Vec<&'static str> {
    BOARDS.iter().map(|b| b.name).collect()
}

impl Board {
    /// The instruction set, from the target triple (`x86_64`, `aarch64`).
    pub(crate) fn arch(&self) -> &'static str {
        self.target.split('-').next().unwrap_or(self.target)
    }

    /// Whether hardware KVM could run this board here: only for the host's own instruction
    /// set (aarch64 boards always run under TCG on an x86_64 host).
    pub(crate) fn kvm_possible(&self) -> bool {
        self.arch() == std::env::consts::ARCH
    }

    /// The machine `name` (or the default one); the error lists the valid ones.
    pub(crate) fn machine(&self, name: Option<&str>) -> Result<&'static str> {
        let name = name.unwrap_or(self.default_machine);
        match self.machines.iter().find(|m| **m == name) {
            Some(machine) => Ok(machine),
            None => usage(format!(
                "unknown machine `{name}` for board {}; valid machines: {}",
                self.name,
                self.machines.join(", ")
            )),
        }
    }

    /// The kernel command-line argument that gives a board `--smp N` where QEMU's `-smp`
    /// does not (LinuxU starts `rhea.cpus=N` vCPUs; raspi4b always has 4 CPUs and uses at
    /// most `rhea.cpus=N`), or why the board cannot honour it.
    pub(crate) fn smp_arg(&self, machine: &str, smp: u32) -> Result<Option<String>, String> {
        match (self.runner, machine) {
            (Runner::Process, "sim") if smp > 1 => Err(format!(
                "--smp {smp}: {}'s simulation mode runs one vCPU (use --machine realtime)",
                self.name
            )),
            (Runner::Process, _) if smp > MAX_CPUS => Err(format!(
                "--smp {smp}: {} runs at most {MAX_CPUS} vCPUs",
                self.name
            )),
            (Runner::Process, _) => Ok((smp > 1).then(|| format!("rhea.cpus={smp}"))),
            (Runner::Qemu, "raspi4b") if smp > RASPI4B_CPUS => Err(format!(
                "--smp {smp}: QEMU's raspi4b always has {RASPI4B_CPUS} CPUs"
            )),
            (Runner::Qemu, "raspi4b") => Ok(Some(format!("rhea.cpus={smp}"))),
            (Runner::Qemu, _) => Ok(None),
        }
    }

    /// The kernel command-line argument that gives a board `--mem SIZE` where QEMU's `-m`
    /// does not (LinuxU maps `rhea.mem_mib=N`), or why the board cannot honour it (raspi4b
    /// has a fixed 2 GiB). `given`: whether `--mem` was on xtask's command line (the default
    /// is no request to a fixed machine).
    pub(crate) fn mem_arg(
        &self,
        machine: &str,
        mem: &str,
        given: bool,
    ) -> Result<Option<String>, String> {
        match (self.runner, machine) {
            (Runner::Process, _) => match mem_mib(mem) {
                Some(mib) if (LINUXU_MIN_MIB..=LINUXU_MAX_MIB).contains(&mib) => {
                    Ok(Some(format!("rhea.mem_mib={mib}")))
                }
                _ => Err(format!(
                    "--mem {mem}: {} takes whole MiB from {LINUXU_MIN_MIB}M to {LINUXU_MAX_MIB}M (rhea.mem_mib)",
                    self.name
                )),
            },
            (Runner::Qemu, "raspi4b") if given && mem_mib(mem) != Some(RASPI4B_MIB) => {
                Err(format!(
                    "--mem {mem}: QEMU's raspi4b always has {}G",
                    RASPI4B_MIB / 1024
                ))
            }
            (Runner::Qemu, _) => Ok(None),
        }
    }

    /// Whether `app` builds for this board (an app with a NIC needs the network stack).
    pub(crate) fn builds(&self, app: &crate::apps::App) -> bool {
        self.network || app.net == crate::apps::Net::None
    }

    /// Why `app` cannot build or run on this board, if it cannot: it needs the network stack
    /// or console input, which the board lacks. `cargo xtask test` and `lint` leave it out.
    pub(crate) fn cannot_run(&self, app: &crate::apps::App) -> Option<&'static str> {
        if !self.builds(app) {
            Some("needs the network stack, which has no build for this board yet")
        } else if !self.console_input && app.stdin.is_some() {
            Some("needs console input, which this board's console lacks")
        } else {
            None
        }
    }

    /// The machines to test: all of them, or just `only` (validated) when given.
    pub(crate) fn machines_to_test(&self, only: Option<&str>) -> Result<Vec<&'static str>> {
        match only {
            Some(name) => Ok(vec![self.machine(Some(name))?]),
            None => Ok(self.machines.to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn table_is_consistent() {
        for board in BOARDS {
            assert!(board.machines.contains(&board.default_machine));
            match board.runner {
                Runner::Qemu => assert!(board.linker_script.starts_with("boards/")),
                Runner::Process => assert!(board.linker_script.is_empty() && board.qemu.is_empty()),
            }
        }
        assert!(find(DEFAULT_BOARD).is_ok());
        let xen = find("xen-arm64").unwrap();
        assert!(xen.default_test && xen.arch() == "aarch64" && xen.max_test_smp == 2);
        assert_eq!(xen.machine(None).unwrap(), "dom0less");
        let arm = find("qemu-aarch64").unwrap();
        assert_eq!(arm.arch(), "aarch64");
        assert_eq!(find("linuxu").unwrap().arch(), "x86_64");
        assert!(!arm.kvm_possible() || std::env::consts::ARCH == "aarch64");
        assert_eq!(
            arm.machines_to_test(None).unwrap(),
            ["virt-gicv2", "virt-gicv3"]
        );
    }

    #[test]
    fn options_a_board_cannot_honour_are_refused() {
        let linuxu = find("linuxu").unwrap();
        assert_eq!(linuxu.smp_arg("realtime", 1), Ok(None));
        assert_eq!(
            linuxu.smp_arg("realtime", 2),
            Ok(Some("rhea.cpus=2".into()))
        );
        assert!(
            linuxu
                .smp_arg("realtime", 65)
                .unwrap_err()
                .contains("at most 64")
        );
        assert!(linuxu.smp_arg("sim", 2).unwrap_err().contains("one vCPU"));
        assert_eq!(linuxu.smp_arg("sim", 1), Ok(None));
        assert_eq!(
            linuxu.mem_arg("realtime", "128M", false),
            Ok(Some("rhea.mem_mib=128".into()))
        );
        assert_eq!(
            linuxu.mem_arg("sim", "1G", true),
            Ok(Some("rhea.mem_mib=1024".into()))
        );
        for bad in ["2M", "8G", "1T", "1536K", "x"] {
            assert!(linuxu.mem_arg("realtime", bad, true).is_err(), "{bad}");
        }
        let rpi4 = find("rpi4").unwrap();
        assert_eq!(rpi4.smp_arg("raspi4b", 2), Ok(Some("rhea.cpus=2".into())));
        assert!(rpi4.smp_arg("raspi4b", 8).is_err());
        assert_eq!(rpi4.mem_arg("raspi4b", "128M", false), Ok(None));
        assert_eq!(rpi4.mem_arg("raspi4b", "2G", true), Ok(None));
        assert!(rpi4.mem_arg("raspi4b", "512M", true).is_err());
        let q = find("qemu-x86_64").unwrap();
        assert_eq!(q.smp_arg("q35", 4), Ok(None));
        assert_eq!(q.mem_arg("q35", "512M", true), Ok(None));
    }

    #[test]
    fn mem_sizes_in_mib() {
        assert_eq!(mem_mib("128M"), Some(128));
        assert_eq!(mem_mib("512"), Some(512));
        assert_eq!(mem_mib("1G"), Some(1024));
        assert_eq!(mem_mib("4096K"), Some(4));
        assert_eq!(mem_mib("1000K"), None);
        assert_eq!(mem_mib("M"), None);
        assert_eq!(mem_mib("1MB"), None);
        assert_eq!(mem_mib("+1M"), None);
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        match find("rpi5") {
            Err(Error::Usage(msg)) => assert!(
                msg.contains("qemu-x86_64, pc-uefi, linuxu, qemu-aarch64, rpi4"),
                "{msg}"
            ),
            other => panic!("{other:?}"),
        }
        let board = find("qemu-x86_64").unwrap();
        assert_eq!(board.machine(None).unwrap(), "q35");
        assert_eq!(board.machine(Some("microvm")).unwrap(), "microvm");
        match board.machine(Some("pc")) {
            Err(Error::Usage(msg)) => assert!(msg.contains("microvm, q35"), "{msg}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(board.machines_to_test(None).unwrap(), ["microvm", "q35"]);
    }
}
