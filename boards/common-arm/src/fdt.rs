//! A flattened devicetree reader (Devicetree Specification v0.4, chapter 5 "Flattened
//! Devicetree (DTB) Format"), in the two steps every parser of firmware data takes here:
//! [`Fdt::new`] checks the header and walks the whole structure block once — every token,
//! name, property length and string offset, the nesting, the memory reservation block — and
//! only a blob that passes is ever read; the accessors after that still use checked reads, so
//! no input can make them panic or read outside the blob.
//!
//! Why not the `fdt` crate: its stable release (0.1.5) panics on malformed blobs (`expect` on
//! missing nodes and unterminated strings, an `assert!` on unexpected tokens, unchecked slicing
//! of out-of-range header offsets), and 0.2 is an alpha with a changing API. A boot-time parser
//! must turn every malformed input into an error the console can show, so this one is written
//! to that rule and host-tested with corrupt blobs (see `tests.rs`).
//!
//! No allocation: nodes are found by walking the structure block, which is bounded by its
//! size; ancestors are tracked on a fixed-depth stack.

use core::fmt;

/// `magic` of a flattened devicetree.
pub const MAGIC: u32 = 0xd00d_feed;
/// Bytes of the version-17 header.
pub const HEADER_BYTES: usize = 40;
/// The largest blob accepted: Linux's arm64 limit (`MAX_FDT_SIZE`, 2 MiB).
pub const MAX_TOTAL_BYTES: usize = 2 << 20;
/// The deepest nesting accepted (real trees are under 8 deep).
pub const MAX_DEPTH: usize = 16;

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// Why a blob was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FdtError {
    /// Fewer bytes than the header or `totalsize` needs.
    Truncated { needed: usize, available: usize },
    /// `magic` is not 0xd00dfeed: this is not a devicetree.
    BadMagic { found: u32 },
    /// Format version outside 17 (with `last_comp_version` ≤ 17).
    UnsupportedVersion { version: u32, last_compatible: u32 },
    /// `totalsize` smaller than the header or larger than [`MAX_TOTAL_BYTES`].
    BadTotalSize { total: u32 },
    /// A block (`struct`, `strings`, `memreserve`) outside `totalsize` or misaligned.
    BadBlock {
        block: &'static str,
        offset: u32,
        size: u32,
    },
    /// An unknown token, or a token where the format allows none.
    BadToken { offset: usize, token: u32 },
    /// A node name or property name that is unterminated or not UTF-8.
    BadName { offset: usize },
    /// A property whose value runs past the structure block, or whose name offset is outside
    /// the strings block.
    BadProperty { offset: usize },
    /// Nodes nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// The structure block does not hold exactly one root node followed by `FDT_END`.
    BadStructure { offset: usize },
    /// The memory reservation list has no terminating entry, or an entry that wraps.
    BadReservations,
}

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { needed, available } => {
                write!(f, "truncated: {needed} bytes needed, {available} available")
            }
            Self::BadMagic { found } => {
                write!(
                    f,
                    "bad magic {found:#010x} (expected {MAGIC:#010x}): not a devicetree"
                )
            }
            Self::UnsupportedVersion {
                version,
                last_compatible,
            } => write!(
                f,
                "format version {version} (last compatible {last_compatible}); version 17 is needed"
            ),
            Self::BadTotalSize { total } => write!(
                f,
                "totalsize {total} is below the {HEADER_BYTES}-byte header or above {MAX_TOTAL_BYTES}"
            ),
            Self::BadBlock {
                block,
                offset,
                size,
            } => write!(
                f,
                "the {block} block at offset {offset:#x} ({size} bytes) is misaligned or outside the blob"
            ),
            Self::BadToken { offset, token } => {
                write!(
                    f,
                    "unexpected token {token:#x} at structure offset {offset:#x}"
                )
            }
            Self::BadName { offset } => write!(
                f,
                "unterminated or non-UTF-8 name at structure offset {offset:#x}"
            ),
            Self::BadProperty { offset } => write!(
                f,
                "property at structure offset {offset:#x} runs past its block"
            ),
            Self::TooDeep => write!(f, "nodes nested deeper than {MAX_DEPTH}"),
            Self::BadStructure { offset } => write!(
                f,
                "the structure block is not one root node ended by FDT_END (offset {offset:#x})"
            ),
            Self::BadReservations => {
                f.write_str("the memory reservation list is unterminated or wraps")
            }
        }
    }
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn be64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from(be32(bytes, at)?) << 32 | u64::from(be32(bytes, at.checked_add(4)?)?))
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The NUL-terminated UTF-8 string at `at` in `bytes`, and its length without the NUL.
fn cstr(bytes: &[u8], at: usize) -> Option<&str> {
    let rest = bytes.get(at..)?;
    let len = rest.iter().position(|&b| b == 0)?;
    core::str::from_utf8(&rest[..len]).ok()
}

/// The header fields, unchecked (step one).
#[derive(Clone, Copy, Debug)]
struct RawHeader {
    magic: u32,
    total: u32,
    off_struct: u32,
    off_strings: u32,
    off_rsvmap: u32,
    version: u32,
    last_comp: u32,
    size_strings: u32,
    size_struct: u32,
}

impl RawHeader {
    fn read(bytes: &[u8]) -> Result<Self, FdtError> {
        if bytes.len() < HEADER_BYTES {
            return Err(FdtError::Truncated {
                needed: HEADER_BYTES,
                available: bytes.len(),
            });
        }
        let w = |i: usize| be32(bytes, i * 4).unwrap_or(0);
        Ok(Self {
            magic: w(0),
            total: w(1),
            off_struct: w(2),
            off_strings: w(3),
            off_rsvmap: w(4),
            version: w(5),
            last_comp: w(6),
            size_strings: w(8),
            size_struct: w(9),
        })
    }
}

/// Reads just the header and returns the blob's `totalsize`, checked: how many bytes to make
/// available to [`Fdt::new`]. For loaders that must know the size before they can map or
/// copy the whole blob.
pub fn total_size(header: &[u8]) -> Result<usize, FdtError> {
    let h = RawHeader::read(header)?;
    if h.magic != MAGIC {
        return Err(FdtError::BadMagic { found: h.magic });
    }
    let total = h.total as usize;
    if !(HEADER_BYTES..=MAX_TOTAL_BYTES).contains(&total) {
        return Err(FdtError::BadTotalSize { total: h.total });
    }
    Ok(total)
}

/// A validated devicetree blob.
#[derive(Clone, Copy)]
pub struct Fdt<'a> {
    structs: &'a [u8],
    strings: &'a [u8],
    rsvmap: &'a [u8],
    total: usize,
}

impl fmt::Debug for Fdt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fdt")
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

fn block<'a>(
    blob: &'a [u8],
    name: &'static str,
    offset: u32,
    size: u32,
    align: usize,
) -> Result<&'a [u8], FdtError> {
    let err = FdtError::BadBlock {
        block: name,
        offset,
        size,
    };
    let start = offset as usize;
    let end = start.checked_add(size as usize).ok_or(err)?;
    if start < HEADER_BYTES || !start.is_multiple_of(align) || end > blob.len() {
        return Err(err);
    }
    Ok(&blob[start..end])
}

impl<'a> Fdt<'a> {
    /// Checks `blob` (which may be longer than the tree; `totalsize` bytes are used) and
    /// returns a reader over it.
    pub fn new(blob: &'a [u8]) -> Result<Self, FdtError> {
        let total = total_size(blob)?;
        if blob.len() < total {
            return Err(FdtError::Truncated {
                needed: total,
                available: blob.len(),
            });
        }
        let blob = &blob[..total];
        let h = RawHeader::read(blob)?;
        if h.version < 17 || h.last_comp > 17 {
            return Err(FdtError::UnsupportedVersion {
                version: h.version,
                last_compatible: h.last_comp,
            });
        }
        let structs = block(blob, "structure", h.off_struct, h.size_struct, 4)?;
        let strings = block(blob, "strings", h.off_strings, h.size_strings, 1)?;
        let rsv_len = total.saturating_sub(h.off_rsvmap as usize) as u32;
        let rsvmap = block(blob, "memory reservation", h.off_rsvmap, rsv_len, 8)?;
        let fdt = Self {
            structs,
            strings,
            rsvmap,
            total,
        };
        fdt.check_structure()?;
        fdt.check_reservations()?;
        Ok(fdt)
    }

    /// The blob's size in bytes (`totalsize`).
    pub fn total_size(&self) -> usize {
        self.total
    }

    /// Walks every token once (step two of the validation).
    fn check_structure(&self) -> Result<(), FdtError> {
        let s = self.structs;
        let mut at = 0;
        let mut depth = 0usize;
        let mut seen_root = false;
        // RT: boot-time only; every iteration consumes at least 4 bytes of the block.
        loop {
            let token = be32(s, at).ok_or(FdtError::BadStructure { offset: at })?;
            let here = at;
            at += 4;
            match token {
                FDT_BEGIN_NODE => {
                    if depth == 0 && seen_root {
                        return Err(FdtError::BadStructure { offset: here });
                    }
                    let name = cstr(s, at).ok_or(FdtError::BadName { offset: at })?;
                    if depth == 0 && !name.is_empty() {
                        return Err(FdtError::BadStructure { offset: here });
                    }
                    at = align4(at + name.len() + 1);
                    depth += 1;
                    seen_root = true;
                    if depth > MAX_DEPTH {
                        return Err(FdtError::TooDeep);
                    }
                }
                FDT_END_NODE => {
                    depth = depth.checked_sub(1).ok_or(FdtError::BadToken {
                        offset: here,
                        token,
                    })?;
                }
                FDT_PROP => {
                    if depth == 0 {
                        return Err(FdtError::BadToken {
                            offset: here,
                            token,
                        });
                    }
                    let bad = FdtError::BadProperty { offset: here };
                    let len = be32(s, at).ok_or(bad)? as usize;
                    let nameoff = be32(s, at + 4).ok_or(bad)? as usize;
                    let value_end = (at + 8).checked_add(len).ok_or(bad)?;
                    if value_end > s.len() {
                        return Err(bad);
                    }
                    cstr(self.strings, nameoff).ok_or(FdtError::BadName { offset: here })?;
                    at = align4(value_end);
                }
                FDT_NOP => {}
                FDT_END => {
                    if depth != 0 || !seen_root {
                        return Err(FdtError::BadStructure { offset: here });
                    }
                    return Ok(());
                }
                _ => {
                    return Err(FdtError::BadToken {
                        offset: here,
                        token,
                    });
                }
            }
        }
    }

    fn check_reservations(&self) -> Result<(), FdtError> {
        for i in 0.. {
            let at = i * 16;
            let (Some(addr), Some(size)) = (be64(self.rsvmap, at), be64(self.rsvmap, at + 8))
            else {
                return Err(FdtError::BadReservations);
            };
            if addr == 0 && size == 0 {
                return Ok(());
            }
            if addr.checked_add(size).is_none() {
                return Err(FdtError::BadReservations);
            }
        }
        Ok(())
    }

    /// The `/memreserve/` entries: `(address, size)`.
    pub fn memory_reservations(&self) -> impl Iterator<Item = (u64, u64)> + 'a {
        let rsv = self.rsvmap;
        (0..)
            .map(move |i: usize| {
                (
                    be64(rsv, i * 16).unwrap_or(0),
                    be64(rsv, i * 16 + 8).unwrap_or(0),
                )
            })
            .take_while(|&(a, s)| a != 0 || s != 0)
    }

    /// The root node.
    pub fn root(&self) -> Node<'a> {
        // The validation found BEGIN_NODE (after NOPs) first; `nodes` starts at it.
        self.nodes().next().unwrap_or_else(|| Node::invalid(*self))
    }

    /// Every node, depth-first, in blob order.
    pub fn nodes(&self) -> Nodes<'a> {
        Nodes {
            fdt: *self,
            at: 0,
            stack: [0; MAX_DEPTH],
            depth: 0,
            done: false,
        }
    }

    /// The first enabled node whose `compatible` list holds one of `compatibles`.
    pub fn find_compatible(&self, compatibles: &[&str]) -> Option<Node<'a>> {
        self.nodes()
            .find(|n| n.is_enabled() && n.compatible().any(|c| compatibles.contains(&c)))
    }

    /// The node at `path` (`/soc/serial@7e201000`; a component without `@unit` matches the
    /// first node of that name whatever its unit address).
    pub fn find_path(&self, path: &str) -> Option<Node<'a>> {
        let path = path.strip_prefix('/')?;
        let mut node = self.root();
        for component in path.split('/').filter(|c| !c.is_empty()) {
            node = node.children().find(|c| {
                c.name() == component
                    || (!component.contains('@') && c.name().split('@').next() == Some(component))
            })?;
        }
        Some(node)
    }

    /// The node whose `phandle` is `phandle`.
    pub fn find_phandle(&self, phandle: u32) -> Option<Node<'a>> {
        self.nodes()
            .find(|n| n.property_u32("phandle") == Some(phandle))
    }

    fn string_at(&self, offset: usize) -> &'a str {
        cstr(self.strings, offset).unwrap_or("")
    }
}

/// A depth-first walk over the nodes.
#[derive(Debug)]
pub struct Nodes<'a> {
    fdt: Fdt<'a>,
    at: usize,
    /// Offsets of the BEGIN_NODE tokens of the open nodes.
    stack: [u32; MAX_DEPTH],
    depth: usize,
    done: bool,
}

impl<'a> Iterator for Nodes<'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        let s = self.fdt.structs;
        // RT: bounded by the block size (validated).
        while !self.done {
            let here = self.at;
            let token = be32(s, here)?;
            self.at += 4;
            match token {
                FDT_BEGIN_NODE => {
                    let name_len = cstr(s, self.at)?.len();
                    self.at = align4(self.at + name_len + 1);
                    let node = Node::new(self.fdt, here, &self.stack[..self.depth]);
                    *self.stack.get_mut(self.depth)? = here as u32;
                    self.depth += 1;
                    return node;
                }
                FDT_END_NODE => self.depth = self.depth.saturating_sub(1),
                FDT_PROP => {
                    let len = be32(s, self.at)? as usize;
                    self.at = align4(self.at + 8 + len);
                }
                FDT_NOP => {}
                _ => self.done = true,
            }
        }
        None
    }
}

/// One node: its name, where its properties start, and its ancestors.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    fdt: Fdt<'a>,
    name: &'a str,
    /// Offset of its BEGIN_NODE token.
    begin: usize,
    /// Offset of the first token after the name: properties, then children.
    body: usize,
    /// BEGIN_NODE offsets of the ancestors, root first.
    ancestors: [u32; MAX_DEPTH],
    depth: usize,
}

impl fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Node({:?})", self.name)
    }
}

impl<'a> Node<'a> {
    fn new(fdt: Fdt<'a>, begin: usize, ancestors: &[u32]) -> Option<Self> {
        let name = cstr(fdt.structs, begin + 4)?;
        let mut a = [0; MAX_DEPTH];
        a.get_mut(..ancestors.len())?.copy_from_slice(ancestors);
        Some(Self {
            fdt,
            name,
            begin,
            body: align4(begin + 4 + name.len() + 1),
            ancestors: a,
            depth: ancestors.len(),
        })
    }

    /// A node with no properties and no children (only for a blob that failed validation,
    /// which `Fdt` never holds).
    fn invalid(fdt: Fdt<'a>) -> Self {
        Self {
            fdt,
            name: "",
            begin: usize::MAX,
            body: usize::MAX,
            ancestors: [0; MAX_DEPTH],
            depth: 0,
        }
    }

    /// The node's name with its unit address (`serial@7e201000`); empty for the root.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The parent, or `None` for the root.
    pub fn parent(&self) -> Option<Node<'a>> {
        let d = self.depth.checked_sub(1)?;
        Node::new(self.fdt, self.ancestors[d] as usize, &self.ancestors[..d])
    }

    /// The properties, in blob order.
    pub fn properties(&self) -> Properties<'a> {
        Properties {
            fdt: self.fdt,
            at: self.body,
        }
    }

    /// The value of property `name`.
    pub fn property(&self, name: &str) -> Option<&'a [u8]> {
        self.properties().find(|p| p.name == name).map(|p| p.value)
    }

    /// Property `name` as one big-endian `u32` (exactly 4 bytes).
    pub fn property_u32(&self, name: &str) -> Option<u32> {
        let v = self.property(name)?;
        if v.len() == 4 { be32(v, 0) } else { None }
    }

    /// Property `name` as a NUL-terminated string.
    pub fn property_str(&self, name: &str) -> Option<&'a str> {
        let v = self.property(name)?;
        match v.split_last() {
            Some((0, s)) => core::str::from_utf8(s).ok(),
            _ => None,
        }
    }

    /// The strings of the `compatible` list.
    pub fn compatible(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.property("compatible")
            .unwrap_or(&[])
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .filter_map(|s| core::str::from_utf8(s).ok())
    }

    /// Whether `status` is absent, `okay` or `ok`.
    pub fn is_enabled(&self) -> bool {
        matches!(self.property_str("status"), None | Some("okay" | "ok"))
    }

    /// The direct children.
    pub fn children(&self) -> impl Iterator<Item = Node<'a>> + 'a {
        let depth = self.depth + 1;
        let me = self.ancestors_with_self();
        let fdt = self.fdt;
        fdt.nodes()
            .filter(move |n| n.depth == depth && n.ancestors[..depth] == me[..depth])
    }

    fn ancestors_with_self(&self) -> [u32; MAX_DEPTH + 1] {
        let mut a = [0; MAX_DEPTH + 1];
        a[..MAX_DEPTH].copy_from_slice(&self.ancestors);
        a[self.depth] = self.begin as u32;
        a
    }

    /// `#address-cells` this node gives its children (default 2).
    pub fn address_cells(&self) -> u32 {
        self.property_u32("#address-cells").unwrap_or(2)
    }

    /// `#size-cells` this node gives its children (default 1).
    pub fn size_cells(&self) -> u32 {
        self.property_u32("#size-cells").unwrap_or(1)
    }
}

/// The properties of a node.
#[derive(Debug)]
pub struct Properties<'a> {
    fdt: Fdt<'a>,
    at: usize,
}

/// One property.
#[derive(Clone, Copy, Debug)]
pub struct Property<'a> {
    /// Its name (from the strings block).
    pub name: &'a str,
    /// Its raw value.
    pub value: &'a [u8],
}

impl<'a> Iterator for Properties<'a> {
    type Item = Property<'a>;

    fn next(&mut self) -> Option<Property<'a>> {
        let s = self.fdt.structs;
        // RT: bounded by the block size (validated).
        loop {
            match be32(s, self.at)? {
                FDT_NOP => self.at += 4,
                FDT_PROP => {
                    let len = be32(s, self.at + 4)? as usize;
                    let nameoff = be32(s, self.at + 8)? as usize;
                    let start = self.at + 12;
                    let value = s.get(start..start.checked_add(len)?)?;
                    self.at = align4(start + len);
                    return Some(Property {
                        name: self.fdt.string_at(nameoff),
                        value,
                    });
                }
                _ => return None,
            }
        }
    }
}

/// Reads `cells` big-endian 32-bit cells (1 or 2) at cell index `i` of `value`.
pub fn read_cells(value: &[u8], i: usize, cells: u32) -> Option<u64> {
    match cells {
        1 => be32(value, i.checked_mul(4)?).map(u64::from),
        2 => be64(value, i.checked_mul(4)?),
        _ => None,
    }
}
