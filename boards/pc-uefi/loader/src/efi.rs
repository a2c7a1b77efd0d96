//! The loader on the firmware: every firmware call and the jump to the kernel.
#![allow(
    unsafe_code,
    reason = "raw page copies, ExitBootServices and the jump to the kernel; each has a SAFETY note"
)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use core::fmt::Write;
use rhea_board_common_x86::pvh::MAX_CMDLINE;
use rhea_board_common_x86::uefi::{
    CONFIG_FILE, CmdlineSource, Framebuffer, HANDOFF_BYTES, Handoff, INITRD_FILE, LoadPlan,
    PixelOrder, choose_cmdline, plan_load,
};
use uefi::boot::{self, AllocateType, MemoryType};
use uefi::mem::memory_map::MemoryMap;
use uefi::proto::console::gop::{GraphicsOutput, PixelFormat};
use uefi::proto::loaded_image::LoadedImage;
use uefi::proto::media::file::{File, FileAttribute, FileMode};
use uefi::table::cfg::ConfigTableEntry;
use uefi::{CStr16, Status, entry, system};

/// The kernel ELF, named by xtask at build time.
static KERNEL: &[u8] = include_bytes!(env!("RHEA_KERNEL_ELF"));

/// Pages after the hand-off page for the memory map's copy: 64 KiB, 1365 descriptors of 48
/// bytes (the kernel takes up to 1024).
const MAP_COPY_PAGES: usize = 16;

/// Largest config file read.
const MAX_CONFIG: usize = 4096;

/// Largest initrd loaded: it must fit below 4 GiB, in the kernel's boot identity map.
const MAX_INITRD: u64 = 1 << 30;

/// Writes a line to the firmware console (screen and serial under OVMF).
macro_rules! say {
    ($($arg:tt)*) => {
        system::with_stdout(|out| {
            let _ = writeln!(out, $($arg)*);
        })
    };
}

#[entry]
fn main() -> Status {
    say!("rhea-uefi: loading the kernel ({} bytes)", KERNEL.len());
    match load_and_start() {
        Ok(never) => match never {},
        Err(why) => {
            say!("rhea-uefi: cannot boot: {why}");
            // Leave the message on screen a moment before the boot manager moves on.
            boot::stall(core::time::Duration::from_secs(3));
            Status::LOAD_ERROR
        }
    }
}

/// An error message for the console (from the boot services pool, before `ExitBootServices`).
type Why = String;

fn load_and_start() -> Result<core::convert::Infallible, Why> {
    let plan = plan_load(KERNEL).map_err(|e| format!("the kernel ELF: {e}"))?;
    if cr4() & CR4_LA57 != 0 {
        return Err(
            "the firmware runs with 5-level paging (CR4.LA57), which the kernel's \
                    entry does not take"
                .into(),
        );
    }
    load(&plan)?;
    // The hand-off page, then room for a copy of the final memory map: the kernel reads both
    // through its boot identity map of the first 4 GiB, and the map UEFI returns may lie above.
    let page = boot::allocate_pages(
        AllocateType::MaxAddress(0xffff_ffff),
        MemoryType::LOADER_DATA,
        1 + MAP_COPY_PAGES,
    )
    .map_err(|e| format!("no page below 4 GiB for the hand-off: {e:?}"))?;
    let page_addr = page.as_ptr() as u64;
    let rsdp = find_rsdp();
    let framebuffer = framebuffer();
    let initrd = read_initrd()?;
    let mut cmdline = [0u8; MAX_CMDLINE];
    let (len, source) = read_cmdline(&mut cmdline)?;
    let cmdline = &cmdline[..len];
    say!(
        "rhea-uefi: kernel {:#x}..{:#x}, entry {:#x}; initrd {}; ACPI RSDP {}; framebuffer \
         {}; command line ({}) \"{}\"",
        plan.start,
        plan.end,
        plan.entry,
        initrd.map_or("none".into(), |(at, bytes)| format!(
            "{INITRD_FILE}, {bytes} bytes at {at:#x}"
        )),
        rsdp.map_or("none".into(), |r| format!("{r:#x}")),
        framebuffer.map_or("none".into(), |f| format!(
            "{}x{} at {:#x}",
            f.width, f.height, f.base
        )),
        match source {
            CmdlineSource::LoadOptions => "load options",
            CmdlineSource::ConfigFile => CONFIG_FILE,
            CmdlineSource::None => "none",
        },
        core::str::from_utf8(cmdline).unwrap_or("?")
    );

    // Everything that can fail with a message has; from here on there is no console.
    // SAFETY: no protocol is held open (GOP, file system and loaded-image scopes ended above)
    // and nothing allocated from the pool is used after this.
    let map = unsafe { boot::exit_boot_services(None) };
    let meta = map.meta();
    let copy = page_addr + HANDOFF_BYTES as u64;
    let memmap = if meta.map_size <= MAP_COPY_PAGES * 4096 {
        // SAFETY: the copy area is ours (allocated with the page) and `map_size` fits in it.
        unsafe {
            core::ptr::copy_nonoverlapping(map.buffer().as_ptr(), copy as *mut u8, meta.map_size);
        }
        copy
    } else {
        // Too long to copy: the kernel reads it where it is, or reports it unreadable.
        map.buffer().as_ptr() as u64
    };
    let handoff = Handoff {
        memmap,
        memmap_bytes: meta.map_size as u64,
        desc_size: meta.desc_size as u32,
        desc_version: meta.desc_version,
        framebuffer,
    };
    let mut bytes = [0u8; HANDOFF_BYTES];
    // The command line was checked by `choose_cmdline`; a failure here cannot be reported, and
    // the kernel then boots with none.
    if handoff
        .encode(page_addr, rsdp, initrd, cmdline, &mut bytes)
        .is_err()
    {
        let _ = handoff.encode(page_addr, rsdp, initrd, b"", &mut bytes);
    }
    // Not freed: there is no pool any more (the kernel treats loader data as free RAM once it
    // has read the map in early boot).
    core::mem::forget(map);
    // SAFETY: `page` is one page we allocated and nothing else uses.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), page.as_ptr(), HANDOFF_BYTES) };
    // SAFETY: the kernel is loaded at its link address (`load`), the firmware's identity map
    // covers it and the hand-off page, paging is 4-level (checked), boot services are gone
    // and interrupts are disabled by the entry's first instruction; `rhea_start64` never
    // returns.
    unsafe {
        core::arch::asm!(
            "cli",
            "jmp {entry}",
            entry = in(reg) plan.entry,
            in("rdi") page_addr,
            options(noreturn)
        )
    }
}

const CR4_LA57: u64 = 1 << 12;

fn cr4() -> u64 {
    let v: u64;
    // SAFETY: reading CR4 has no side effect; UEFI applications run at CPL 0.
    unsafe { core::arch::asm!("mov {}, cr4", out(reg) v, options(nomem, nostack)) };
    v
}

/// Allocates the kernel's range at its link address and copies it in.
fn load(plan: &LoadPlan) -> Result<(), Why> {
    let pages = ((plan.end - plan.start) / 4096) as usize;
    boot::allocate_pages(
        AllocateType::Address(plan.start),
        MemoryType::LOADER_CODE,
        pages,
    )
    .map_err(|e| {
        format!(
            "the memory at {:#x}..{:#x} that the kernel is linked for is not free ({:?}): \
             the firmware uses it",
            plan.start,
            plan.end,
            e.status()
        )
    })?;
    // SAFETY: `[start, end)` was just allocated to us, is identity-mapped by the firmware and
    // nothing else refers to it.
    unsafe { core::ptr::write_bytes(plan.start as *mut u8, 0, (plan.end - plan.start) as usize) };
    for s in &plan.segments[..plan.len] {
        let from = &KERNEL[s.offset as usize..(s.offset + s.file_bytes) as usize];
        // SAFETY: `plan_load` checked that every segment lies inside `[start, end)` and its
        // file bytes inside the ELF.
        unsafe {
            core::ptr::copy_nonoverlapping(from.as_ptr(), s.paddr as *mut u8, from.len());
        }
    }
    Ok(())
}

/// The ACPI 2.0+ RSDP, else the ACPI 1.0 one.
fn find_rsdp() -> Option<u64> {
    system::with_config_table(|entries| {
        let find = |guid| {
            entries
                .iter()
                .find(|e| e.guid == guid)
                .map(|e| e.address as u64)
        };
        find(ConfigTableEntry::ACPI2_GUID).or_else(|| find(ConfigTableEntry::ACPI_GUID))
    })
}

/// The GOP framebuffer in its current mode, if it is 32-bit RGB or BGR.
fn framebuffer() -> Option<Framebuffer> {
    let handle = boot::get_handle_for_protocol::<GraphicsOutput>().ok()?;
    let mut gop = boot::open_protocol_exclusive::<GraphicsOutput>(handle).ok()?;
    let info = gop.current_mode_info();
    let order = match info.pixel_format() {
        PixelFormat::Rgb => PixelOrder::Rgb,
        PixelFormat::Bgr => PixelOrder::Bgr,
        other => {
            say!(
                "rhea-uefi: framebuffer pixel format {other:?} is not supported; no screen console"
            );
            return None;
        }
    };
    let (width, height) = info.resolution();
    let stride = info.stride();
    let mut fb = gop.frame_buffer();
    let fb = Framebuffer {
        base: fb.as_mut_ptr() as u64,
        bytes: fb.size() as u64,
        width: width as u32,
        height: height as u32,
        stride: stride as u32,
        order,
    };
    if fb.is_consistent() {
        Some(fb)
    } else {
        say!("rhea-uefi: GOP reports an inconsistent framebuffer {fb:?}; no screen console");
        None
    }
}

/// The command line: load options, else the config file on the boot partition.
fn read_cmdline(out: &mut [u8; MAX_CMDLINE]) -> Result<(usize, CmdlineSource), Why> {
    let mut options = [0u16; MAX_CMDLINE];
    let n = {
        let image = boot::open_protocol_exclusive::<LoadedImage>(boot::image_handle())
            .map_err(|e| format!("no loaded-image protocol: {e:?}"))?;
        let bytes = image.load_options_as_bytes().unwrap_or(&[]);
        let n = (bytes.len() / 2).min(options.len());
        for (i, w) in options[..n].iter_mut().enumerate() {
            *w = u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]);
        }
        n
    };
    let mut config = [0u8; MAX_CONFIG];
    let config_len = read_config(&mut config);
    choose_cmdline(&options[..n], config_len.map(|len| &config[..len]), out)
        .map_err(|e| format!("{e}"))
}

/// Loads [`INITRD_FILE`] from the partition this image was loaded from into loader memory
/// below 4 GiB (which the kernel keeps: the start info names it as a module); `(address,
/// bytes)`, or `None` when there is no such file (or no file system). A file that is there
/// but cannot be read whole is an error: booting without the files the app expects would
/// only fail later, and less clearly.
fn read_initrd() -> Result<Option<(u64, u64)>, Why> {
    let Ok(mut fs) = boot::get_image_file_system(boot::image_handle()) else {
        return Ok(None);
    };
    let Ok(mut root) = fs.open_volume() else {
        return Ok(None);
    };
    let mut wide = [0u16; 32];
    let name = CStr16::from_str_with_buf(INITRD_FILE, &mut wide)
        .map_err(|_| format!("{INITRD_FILE}: not a UCS-2 name"))?;
    let Ok(file) = root.open(name, FileMode::Read, FileAttribute::empty()) else {
        return Ok(None);
    };
    let mut file = file
        .into_regular_file()
        .ok_or_else(|| format!("{INITRD_FILE} is a directory"))?;
    // Its size: the position at its end (UEFI 2.10 §13.5.13, SetPosition to all ones).
    let bytes = file
        .set_position(uefi::proto::media::file::RegularFile::END_OF_FILE)
        .and_then(|()| file.get_position())
        .and_then(|end| file.set_position(0).map(|()| end))
        .map_err(|e| format!("{INITRD_FILE}: cannot find its size ({:?})", e.status()))?;
    if bytes == 0 {
        return Ok(None);
    }
    if bytes > MAX_INITRD {
        return Err(format!(
            "{INITRD_FILE} is {bytes} bytes; at most {MAX_INITRD} are loaded"
        ));
    }
    let pages = bytes.div_ceil(4096) as usize;
    let at = boot::allocate_pages(
        AllocateType::MaxAddress(0xffff_ffff),
        MemoryType::LOADER_DATA,
        pages,
    )
    .map_err(|e| format!("no room below 4 GiB for {INITRD_FILE} ({bytes} bytes): {e:?}"))?;
    // SAFETY: `pages` pages at `at` were just allocated to us and nothing else refers to them;
    // `bytes` fits in them.
    let buf = unsafe { core::slice::from_raw_parts_mut(at.as_ptr(), bytes as usize) };
    let mut done = 0;
    while done < buf.len() {
        match file.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) => return Err(format!("cannot read {INITRD_FILE}: {:?}", e.status())),
        }
    }
    if done as u64 != bytes {
        return Err(format!("{INITRD_FILE}: read {done} of its {bytes} bytes"));
    }
    Ok(Some((at.as_ptr() as u64, bytes)))
}

/// Reads [`CONFIG_FILE`] from the partition this image was loaded from; `None` if there is
/// none (or no file system: the image may have come over the network).
fn read_config(buf: &mut [u8; MAX_CONFIG]) -> Option<usize> {
    let mut fs = boot::get_image_file_system(boot::image_handle()).ok()?;
    let mut root = fs.open_volume().ok()?;
    let mut wide = [0u16; 32];
    let name = CStr16::from_str_with_buf(CONFIG_FILE, &mut wide).ok()?;
    let file = root
        .open(name, FileMode::Read, FileAttribute::empty())
        .ok()?;
    let mut file = file.into_regular_file()?;
    let n = file.read(buf).ok()?;
    if n == buf.len() {
        say!("rhea-uefi: {CONFIG_FILE} is longer than {MAX_CONFIG} bytes; only the start is read");
    }
    Some(n)
}
