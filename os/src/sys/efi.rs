//! UEFI variables as init reads and writes them through efivarfs
//! (`/sys/firmware/efi/efivars/NAME-GUID`: 4 bytes of attributes, then the value): the
//! `Boot####` load options of the two slots, `BootNext` (boot a slot once) and `BootOrder`
//! (the committed slot first), and systemd-stub's `LoaderDevicePartUUID` (which partition
//! the running unified kernel image came from).

use super::gpt::Guid;

/// efivarfs mount point.
pub const EFIVARS: &str = "/sys/firmware/efi/efivars";
/// The UEFI global variable GUID (`Boot####`, `BootNext`, `BootOrder`, `BootCurrent`).
pub const GLOBAL: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// systemd's loader interface GUID (`LoaderDevicePartUUID`).
pub const LOADER: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
/// Attributes of boot variables: non-volatile, boot service and runtime access.
pub const ATTR_NV_BS_RT: u32 = 0x7;
/// `LOAD_OPTION_ACTIVE`.
const LOAD_OPTION_ACTIVE: u32 = 0x1;
/// The boot option numbers of slots A and B (`BootAE0A`, `BootAE0B`).
pub const SLOT_OPTIONS: [u16; 2] = [0xAE0A, 0xAE0B];
/// Path of the unified kernel image on a slot's ESP.
pub const UKI_PATH: &str = "\\EFI\\BOOT\\BOOTX64.EFI";

/// Boot option number of `slot` (`A`/`B`).
pub fn slot_option(slot: &str) -> u16 {
    if slot == "B" {
        SLOT_OPTIONS[1]
    } else {
        SLOT_OPTIONS[0]
    }
}

/// The efivarfs file name of a variable.
pub fn var_path(name: &str, guid: &str) -> String {
    format!("{EFIVARS}/{name}-{guid}")
}

/// `Boot####` variable name.
pub fn boot_var(option: u16) -> String {
    format!("Boot{option:04X}")
}

fn ucs2(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(std::iter::once(0))
        .flat_map(|u| u.to_le_bytes())
        .collect()
}

/// Where a slot's ESP is on the disk (what its hard-drive device path node says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspLocation {
    /// 1-based GPT partition number.
    pub number: u32,
    /// First sector.
    pub start_lba: u64,
    /// Length in sectors.
    pub sectors: u64,
    /// The partition's unique GUID (on-disk byte order).
    pub guid: Guid,
}

/// An `EFI_LOAD_OPTION` booting `path` on the ESP at `esp` (a short-form device path that
/// starts with the hard-drive node, which the UEFI specification requires boot managers to
/// expand).
pub fn load_option(description: &str, esp: EspLocation, path: &str) -> Vec<u8> {
    let mut dp = Vec::new();
    // Hard drive media device path: type 4, subtype 1, length 42.
    dp.extend_from_slice(&[4, 1, 42, 0]);
    dp.extend_from_slice(&esp.number.to_le_bytes());
    dp.extend_from_slice(&esp.start_lba.to_le_bytes());
    dp.extend_from_slice(&esp.sectors.to_le_bytes());
    dp.extend_from_slice(&esp.guid.0);
    dp.extend_from_slice(&[2, 2]); // GPT, GUID signature
                                   // File path media device path: type 4, subtype 4.
    let file = ucs2(path);
    let len = u16::try_from(4 + file.len()).unwrap_or(u16::MAX);
    dp.extend_from_slice(&[4, 4]);
    dp.extend_from_slice(&len.to_le_bytes());
    dp.extend_from_slice(&file);
    // End of the entire device path.
    dp.extend_from_slice(&[0x7f, 0xff, 4, 0]);
    let mut out = Vec::new();
    out.extend_from_slice(&LOAD_OPTION_ACTIVE.to_le_bytes());
    out.extend_from_slice(&u16::try_from(dp.len()).unwrap_or(u16::MAX).to_le_bytes());
    out.extend_from_slice(&ucs2(description));
    out.extend_from_slice(&dp);
    out
}

/// A `BootOrder`/`BootNext` value from option numbers.
pub fn u16_list(options: &[u16]) -> Vec<u8> {
    options.iter().flat_map(|o| o.to_le_bytes()).collect()
}

/// Option numbers of a `BootOrder` value (without the attribute bytes).
pub fn parse_u16_list(value: &[u8]) -> Vec<u16> {
    value
        .chunks_exact(2)
        .map(|c| {
            u16::from_le_bytes([
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
            ])
        })
        .collect()
}

/// `BootOrder` with `first` moved to the front, `second` right after it, the rest kept.
pub fn boot_order_with(current: &[u16], first: u16, second: u16) -> Vec<u16> {
    let mut out = vec![first, second];
    out.extend(
        current
            .iter()
            .copied()
            .filter(|o| *o != first && *o != second),
    );
    out
}

/// The partition GUID in a `LoaderDevicePartUUID` value (UTF-16LE text, attribute bytes
/// already removed).
pub fn parse_partuuid(value: &[u8]) -> Option<Guid> {
    let units: Vec<u16> = value
        .chunks_exact(2)
        .map(|c| {
            u16::from_le_bytes([
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
            ])
        })
        .take_while(|u| *u != 0)
        .collect();
    Guid::parse(String::from_utf16(&units).ok()?.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_option_layout() {
        let guid = Guid::parse("01234567-89AB-CDEF-0123-456789ABCDEF").unwrap();
        let esp = EspLocation {
            number: 3,
            start_lba: 2048,
            sectors: 4096,
            guid,
        };
        let o = load_option("AERGO OS B", esp, UKI_PATH);
        assert_eq!(&o[0..4], &[1, 0, 0, 0]);
        let dp_len = u16::from_le_bytes([o[4], o[5]]) as usize;
        let desc_len = ("AERGO OS B".len() + 1) * 2;
        assert_eq!(o.len(), 6 + desc_len + dp_len);
        let dp = &o[6 + desc_len..];
        assert_eq!(&dp[0..4], &[4, 1, 42, 0]);
        assert_eq!(u32::from_le_bytes(dp[4..8].try_into().unwrap()), 3);
        assert_eq!(u64::from_le_bytes(dp[8..16].try_into().unwrap()), 2048);
        assert_eq!(u64::from_le_bytes(dp[16..24].try_into().unwrap()), 4096);
        assert_eq!(&dp[24..40], &guid.0);
        assert_eq!(&dp[40..42], &[2, 2]);
        assert_eq!(&dp[42..44], &[4, 4]);
        let file_len = u16::from_le_bytes([dp[44], dp[45]]) as usize;
        assert_eq!(file_len, 4 + (UKI_PATH.len() + 1) * 2);
        assert_eq!(&dp[dp.len() - 4..], &[0x7f, 0xff, 4, 0]);
        assert_eq!(dp.len(), 42 + file_len + 4);
    }

    #[test]
    fn boot_order_and_partuuid() {
        assert_eq!(parse_u16_list(&u16_list(&[1, 0xAE0B])), vec![1, 0xAE0B]);
        assert_eq!(
            boot_order_with(&[0xAE0A, 3, 0xAE0B, 1], 0xAE0B, 0xAE0A),
            vec![0xAE0B, 0xAE0A, 3, 1]
        );
        let text = "01234567-89ab-cdef-0123-456789abcdef";
        let v: Vec<u8> = text
            .encode_utf16()
            .chain([0])
            .flat_map(|u| u.to_le_bytes())
            .collect();
        assert_eq!(
            parse_partuuid(&v),
            Some(Guid::parse("01234567-89AB-CDEF-0123-456789ABCDEF").unwrap())
        );
        assert_eq!(parse_partuuid(b"\x41\x00"), None);
        assert_eq!(slot_option("B"), 0xAE0B);
        assert_eq!(boot_var(0xAE0A), "BootAE0A");
        // EFI_GLOBAL_VARIABLE (UEFI specification, 3.3 Globally Defined Variables).
        assert_eq!(
            var_path("BootNext", GLOBAL),
            "/sys/firmware/efi/efivars/BootNext-8be4df61-93ca-11d2-aa0d-00e098032b8c"
        );
    }
}
