//! The TXT record of `_offload._tcp`: one table (`FIELDS`) says, for every key, which
//! field of [`WorkerAd`] it carries, how long its value may be and how it is written and
//! read; [`encode`] and [`decode`] only walk it. The schema is described in the crate's
//! documentation ("The TXT record").

use thiserror::Error;

use crate::ad::{
    Arch, Compiler, NAME_MAX, Reason, TOKEN_MAX, WORKER_ID_MAX, WorkerAd, WorkerId, check_name,
};

/// The version of this TXT schema, sent first as `txtvers` (RFC 6763 §6.7). Adding keys
/// does not change it (readers ignore keys they do not know); changing the meaning or the
/// format of a key does, and a reader refuses any version but its own.
pub const TXT_VERSION: u32 = 1;

/// The most bytes the whole TXT record may take on the wire (each string with its length
/// byte). RFC 6763 §6.2: "up to 400 bytes should fit in a single 512-byte DNS message";
/// with the PTR, SRV and address records the announcement stays one packet.
pub const TXT_BUDGET: usize = 400;

/// The most bytes one TXT string may take (`key=value`; DNS prefixes it with one length
/// byte).
pub const TXT_STRING_MAX: usize = 255;

/// Why an ad could not be written or read. Every check of a TXT record that a peer sent
/// ends in one of these, never in a panic.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum AdError {
    /// `txtvers` is not [`TXT_VERSION`]: a peer of another generation.
    #[error(
        "TXT schema version {found:?} is not supported (this build reads version {TXT_VERSION})"
    )]
    UnsupportedVersion {
        /// The value sent.
        found: String,
    },
    /// A required key is absent.
    #[error("TXT key `{key}` is missing")]
    MissingKey {
        /// The key.
        key: &'static str,
    },
    /// A key appears twice (in any case: TXT keys are case-insensitive).
    #[error("TXT key `{key}` appears more than once")]
    DuplicateKey {
        /// The key.
        key: &'static str,
    },
    /// A key has no `=` (a "boolean attribute"), but its field needs a value.
    #[error("TXT key `{key}` has no value")]
    NoValue {
        /// The key.
        key: &'static str,
    },
    /// A value is longer than its field allows.
    #[error("`{key}` is {len} bytes long; at most {max} are allowed")]
    TooLong {
        /// The key.
        key: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A value is not UTF-8.
    #[error("TXT value of `{key}` is not UTF-8")]
    NotUtf8 {
        /// The key.
        key: &'static str,
    },
    /// A value is malformed or out of range.
    #[error("`{key}`: {why}")]
    Invalid {
        /// The key (or `port`, for the SRV record's port).
        key: &'static str,
        /// What is wrong with it.
        why: String,
    },
}

impl AdError {
    pub(crate) fn invalid(key: &'static str, why: impl Into<String>) -> AdError {
        AdError::Invalid {
            key,
            why: why.into(),
        }
    }
}

/// The fields of a record being read, before the cross-field checks.
#[derive(Default)]
struct Draft {
    protocol: Option<u32>,
    id: Option<WorkerId>,
    name: Option<String>,
    arch: Option<Arch>,
    slots: Option<u16>,
    free_slots: Option<u16>,
    donating: Option<bool>,
    reason: Option<Reason>,
    epoch: Option<u64>,
    compilers: Vec<Compiler>,
    compilers_truncated: bool,
}

/// One key of the schema.
pub(crate) struct Field {
    /// The key, lower case, as written.
    pub(crate) key: &'static str,
    /// Whether a record without it is refused (an optional key that is absent leaves
    /// its field at its default).
    pub(crate) required: bool,
    /// The longest value accepted when reading (checked before anything else).
    pub(crate) max: usize,
    /// Writes the field of an ad (and the announcement's sequence number, for `seq`);
    /// `None` leaves the key out.
    encode: fn(&WorkerAd, u32) -> Option<String>,
    /// Reads the value into the draft.
    decode: fn(&str, &mut Draft) -> Result<(), AdError>,
}

const CC_KEY: &str = "cc";
const CC_MORE_KEY: &str = "ccmore";
const VERSION_KEY: &str = "txtvers";

/// The schema, in the order keys are written (`txtvers` first, as RFC 6763 §6.7 asks).
pub(crate) const FIELDS: &[Field] = &[
    Field {
        key: VERSION_KEY,
        required: true,
        max: 10,
        encode: |_, _| Some(TXT_VERSION.to_string()),
        // Checked before all the others, in `decode`.
        decode: |_, _| Ok(()),
    },
    Field {
        key: "proto",
        required: true,
        max: 10,
        encode: |ad, _| Some(ad.protocol.to_string()),
        decode: |v, d| {
            d.protocol = Some(uint("proto", v)?);
            Ok(())
        },
    },
    Field {
        key: "id",
        required: true,
        max: WORKER_ID_MAX,
        encode: |ad, _| Some(ad.id.as_str().to_owned()),
        decode: |v, d| {
            d.id = Some(WorkerId::new(v)?);
            Ok(())
        },
    },
    Field {
        key: "name",
        required: true,
        max: NAME_MAX,
        encode: |ad, _| Some(ad.name.clone()),
        decode: |v, d| {
            check_name(v)?;
            d.name = Some(v.to_owned());
            Ok(())
        },
    },
    Field {
        key: "arch",
        required: true,
        max: TOKEN_MAX,
        encode: |ad, _| Some(ad.arch.as_str().to_owned()),
        decode: |v, d| {
            d.arch = Some(Arch::parse(v)?);
            Ok(())
        },
    },
    Field {
        key: "slots",
        required: true,
        max: 5,
        encode: |ad, _| Some(ad.slots.to_string()),
        decode: |v, d| {
            d.slots = Some(uint("slots", v)?);
            Ok(())
        },
    },
    Field {
        key: "free",
        required: true,
        max: 5,
        encode: |ad, _| Some(ad.free_slots.to_string()),
        decode: |v, d| {
            d.free_slots = Some(uint("free", v)?);
            Ok(())
        },
    },
    Field {
        key: "don",
        required: true,
        max: 1,
        encode: |ad, _| Some(if ad.donating { "1" } else { "0" }.to_owned()),
        decode: |v, d| {
            d.donating = Some(match v {
                "1" => true,
                "0" => false,
                _ => return Err(AdError::invalid("don", "not 0 or 1")),
            });
            Ok(())
        },
    },
    Field {
        key: "why",
        required: true,
        max: TOKEN_MAX,
        encode: |ad, _| Some(ad.reason.as_str().to_owned()),
        decode: |v, d| {
            d.reason = Some(Reason::parse(v)?);
            Ok(())
        },
    },
    Field {
        key: "epoch",
        required: true,
        max: 20,
        encode: |ad, _| Some(ad.epoch.to_string()),
        decode: |v, d| {
            d.epoch = Some(uint("epoch", v)?);
            Ok(())
        },
    },
    Field {
        key: "seq",
        required: false,
        max: 10,
        encode: |_, seq| Some(seq.to_string()),
        // Only there to make each announcement's record new to mDNS caches.
        decode: |v, _| uint::<u32>("seq", v).map(drop),
    },
    Field {
        key: CC_KEY,
        required: false,
        max: TXT_STRING_MAX,
        // The whole list; `encode` cuts it to the budget.
        encode: |ad, _| {
            (!ad.compilers.is_empty()).then(|| {
                ad.compilers
                    .iter()
                    .map(Compiler::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
        },
        decode: |v, d| {
            if v.is_empty() {
                return Ok(());
            }
            for c in v.split(',') {
                let c = Compiler::new(c)?;
                if !d.compilers.contains(&c) {
                    d.compilers.push(c);
                }
            }
            Ok(())
        },
    },
    Field {
        key: CC_MORE_KEY,
        required: false,
        max: 1,
        // Written by `encode` when it had to cut the list (or the ad says it was cut).
        encode: |ad, _| ad.compilers_truncated.then(|| "1".to_owned()),
        decode: |v, d| {
            d.compilers_truncated = match v {
                "1" => true,
                "0" => false,
                _ => return Err(AdError::invalid(CC_MORE_KEY, "not 0 or 1")),
            };
            Ok(())
        },
    },
];

/// A decimal number: ASCII digits only (no sign, no spaces), in range.
fn uint<T: TryFrom<u64>>(key: &'static str, v: &str) -> Result<T, AdError> {
    if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AdError::invalid(key, "not a decimal number"));
    }
    let n: u64 = v
        .parse()
        .map_err(|_| AdError::invalid(key, "number out of range"))?;
    T::try_from(n).map_err(|_| AdError::invalid(key, "number out of range"))
}

/// The bytes `props` take in a TXT record on the wire: each `key=value` string and its
/// length byte.
pub fn wire_size<K: AsRef<str>, V: AsRef<str>>(props: &[(K, V)]) -> usize {
    props
        .iter()
        .map(|(k, v)| 1 + k.as_ref().len() + 1 + v.as_ref().len())
        .sum()
}

/// Checks `ad` and writes its TXT properties, `txtvers` first, with `seq` as the
/// announcement's sequence number. Every string fits in [`TXT_STRING_MAX`] bytes and the
/// record in [`TXT_BUDGET`]: when the compilers do not fit, the list keeps its first
/// ones (those that fit, in order) and `ccmore=1` says it was cut.
///
/// The port is not in the record (it is the SRV record's).
pub fn encode(ad: &WorkerAd, seq: u32) -> Result<Vec<(&'static str, String)>, AdError> {
    check(ad)?;
    let write = |ad: &WorkerAd| -> Vec<(&'static str, String)> {
        FIELDS
            .iter()
            .filter_map(|f| (f.encode)(ad, seq).map(|v| (f.key, v)))
            .collect()
    };
    let fits = |props: &[(&'static str, String)]| {
        wire_size(props) <= TXT_BUDGET && !cc_string_too_long(props)
    };
    let mut props = write(ad);
    // Drop compilers from the end until the record fits; mark it as cut.
    let mut cut = ad.clone();
    while !fits(&props) && cut.compilers.pop().is_some() {
        cut.compilers_truncated = true;
        props = write(&cut);
    }
    // Every fixed field is bounded: together they take at most ~320 bytes (a test checks
    // the worst case), so with the compilers cut the record always fits.
    debug_assert!(fits(&props));
    Ok(props)
}

fn cc_string_too_long(props: &[(&'static str, String)]) -> bool {
    props
        .iter()
        .any(|(k, v)| k.len() + 1 + v.len() > TXT_STRING_MAX)
}

/// The checks that [`decode`] makes on a record, made on an ad before writing it.
fn check(ad: &WorkerAd) -> Result<(), AdError> {
    check_name(&ad.name)?;
    check_slots(ad.slots, ad.free_slots)?;
    check_port(ad.port)
}

fn check_slots(slots: u16, free: u16) -> Result<(), AdError> {
    if slots == 0 {
        return Err(AdError::invalid("slots", "a worker has at least one slot"));
    }
    if free > slots {
        return Err(AdError::invalid(
            "free",
            format!("{free} free slots of {slots}"),
        ));
    }
    Ok(())
}

fn check_port(port: u16) -> Result<(), AdError> {
    if port == 0 {
        return Err(AdError::invalid("port", "port 0"));
    }
    Ok(())
}

/// Reads an ad from TXT properties (`key`, value; `None` for a key without `=`) and the
/// SRV record's port.
///
/// Keys are case-insensitive; unknown keys are ignored (newer peers may add some); a
/// known key that appears twice, a value that is too long, not UTF-8 or malformed, a
/// missing required key and any `txtvers` but [`TXT_VERSION`] are errors. `txtvers` is
/// checked first: a record of another version is reported as such, whatever else is in
/// it.
pub fn decode<'a, I>(props: I, port: u16) -> Result<WorkerAd, AdError>
where
    I: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
{
    let mut values: [Option<&str>; FIELDS.len()] = [None; FIELDS.len()];
    let mut errors = Vec::new();
    for (key, val) in props {
        let Some(i) = FIELDS.iter().position(|f| f.key.eq_ignore_ascii_case(key)) else {
            continue;
        };
        let f = &FIELDS[i];
        if values[i].is_some() {
            errors.push((i, AdError::DuplicateKey { key: f.key }));
            continue;
        }
        let Some(val) = val else {
            errors.push((i, AdError::NoValue { key: f.key }));
            continue;
        };
        if val.len() > f.max {
            errors.push((
                i,
                AdError::TooLong {
                    key: f.key,
                    len: val.len(),
                    max: f.max,
                },
            ));
            continue;
        }
        match std::str::from_utf8(val) {
            Ok(v) => values[i] = Some(v),
            Err(_) => errors.push((i, AdError::NotUtf8 { key: f.key })),
        }
    }
    // The version decides how to read the rest: its own problems come first.
    if let Some(e) = errors.iter().find(|(i, _)| FIELDS[*i].key == VERSION_KEY) {
        return Err(e.1.clone());
    }
    match values[0] {
        None => return Err(AdError::MissingKey { key: VERSION_KEY }),
        Some(v) if v != TXT_VERSION.to_string() => {
            return Err(AdError::UnsupportedVersion {
                found: v.to_owned(),
            });
        }
        Some(_) => {}
    }
    if let Some((_, e)) = errors.into_iter().next() {
        return Err(e);
    }
    let mut d = Draft::default();
    for (f, v) in FIELDS.iter().zip(values) {
        match v {
            Some(v) => (f.decode)(v, &mut d)?,
            None if f.required => return Err(AdError::MissingKey { key: f.key }),
            None => {}
        }
    }
    let missing = |key| AdError::MissingKey { key };
    let ad = WorkerAd {
        protocol: d.protocol.ok_or(missing("proto"))?,
        id: d.id.ok_or(missing("id"))?,
        name: d.name.ok_or(missing("name"))?,
        arch: d.arch.ok_or(missing("arch"))?,
        slots: d.slots.ok_or(missing("slots"))?,
        free_slots: d.free_slots.ok_or(missing("free"))?,
        donating: d.donating.ok_or(missing("don"))?,
        reason: d.reason.ok_or(missing("why"))?,
        epoch: d.epoch.ok_or(missing("epoch"))?,
        compilers: d.compilers,
        compilers_truncated: d.compilers_truncated,
        port,
    };
    check(&ad)?;
    Ok(ad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ad::Compiler;

    fn ad() -> WorkerAd {
        let mut ad = WorkerAd::new(
            4,
            WorkerId::new("SHA256:n5Yq0rZ0kqj2m5A1bQ+8x/3XqJ6rZB8p4tN2R0YdK0E").unwrap(),
            "build-box",
            8,
            7420,
        );
        ad.arch = Arch::X86_64;
        ad.free_slots = 3;
        ad.epoch = 1_700_000_000_123;
        ad.compilers = ["gcc-12", "g++-12", "clang-14"]
            .iter()
            .map(|c| Compiler::new(*c).unwrap())
            .collect();
        ad
    }

    /// The properties as `decode` takes them.
    fn as_input(props: &[(&'static str, String)]) -> Vec<(&'static str, Option<Vec<u8>>)> {
        props
            .iter()
            .map(|(k, v)| (*k, Some(v.clone().into_bytes())))
            .collect()
    }

    fn decode_owned(props: &[(&str, Option<Vec<u8>>)], port: u16) -> Result<WorkerAd, AdError> {
        decode(props.iter().map(|(k, v)| (*k, v.as_deref())), port)
    }

    fn props_of(ad: &WorkerAd) -> Vec<(&'static str, Option<Vec<u8>>)> {
        as_input(&encode(ad, 0).unwrap())
    }

    #[test]
    fn the_record_as_written() {
        let props = encode(&ad(), 7).unwrap();
        let text: Vec<String> = props.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            text,
            [
                "txtvers=1",
                "proto=4",
                "id=SHA256:n5Yq0rZ0kqj2m5A1bQ+8x/3XqJ6rZB8p4tN2R0YdK0E",
                "name=build-box",
                "arch=x86_64",
                "slots=8",
                "free=3",
                "don=1",
                "why=idle",
                "epoch=1700000000123",
                "seq=7",
                "cc=gcc-12,g++-12,clang-14",
            ]
        );
    }

    #[test]
    fn round_trips() {
        let base = ad();
        let variants: Vec<(&str, WorkerAd)> = vec![
            ("base", base.clone()),
            (
                "not donating, on battery",
                WorkerAd {
                    donating: false,
                    reason: Reason::OnBattery,
                    free_slots: 0,
                    ..base.clone()
                },
            ),
            (
                "unknown reason",
                WorkerAd {
                    reason: Reason::Other("solar-eclipse".into()),
                    ..base.clone()
                },
            ),
            (
                "aarch64, no compilers",
                WorkerAd {
                    arch: Arch::Aarch64,
                    compilers: vec![],
                    ..base.clone()
                },
            ),
            (
                "other arch",
                WorkerAd {
                    arch: Arch::Other("riscv64".into()),
                    ..base.clone()
                },
            ),
            (
                "extremes",
                WorkerAd {
                    protocol: u32::MAX,
                    slots: u16::MAX,
                    free_slots: u16::MAX,
                    epoch: u64::MAX,
                    port: u16::MAX,
                    name: "€".repeat(21),
                    ..base.clone()
                },
            ),
            (
                "flagged as cut",
                WorkerAd {
                    compilers_truncated: true,
                    ..base.clone()
                },
            ),
        ];
        for (what, ad) in variants {
            let back =
                decode_owned(&props_of(&ad), ad.port).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(back, ad, "{what}");
        }
        for (t, r) in crate::ad::REASONS {
            let ad = WorkerAd {
                reason: r.clone(),
                ..base.clone()
            };
            let props = encode(&ad, 0).unwrap();
            assert!(props.contains(&("why", (*t).to_owned())));
            assert_eq!(decode_owned(&as_input(&props), 7420).unwrap(), ad);
        }
    }

    #[test]
    fn many_compilers_are_cut_to_the_budget_and_flagged() {
        let mut ad = ad();
        ad.compilers = (0..200)
            .map(|i| Compiler::new(format!("x86_64-linux-gnu-gcc-{i}")).unwrap())
            .collect();
        let props = encode(&ad, 0).unwrap();
        assert!(wire_size(&props) <= TXT_BUDGET, "{}", wire_size(&props));
        for (k, v) in &props {
            assert!(k.len() + 1 + v.len() <= TXT_STRING_MAX);
        }
        assert!(props.contains(&("ccmore", "1".to_owned())));
        let back = decode_owned(&as_input(&props), 7420).unwrap();
        assert!(back.compilers_truncated);
        assert!(!back.compilers.is_empty());
        assert_eq!(back.compilers[..], ad.compilers[..back.compilers.len()]);
        // The cut list is as long as the budget allows: one more would not fit.
        let longer = WorkerAd {
            compilers: ad.compilers[..back.compilers.len() + 1].to_vec(),
            compilers_truncated: true,
            ..ad.clone()
        };
        let all: Vec<_> = FIELDS
            .iter()
            .filter_map(|f| (f.encode)(&longer, 0).map(|v| (f.key, v)))
            .collect();
        assert!(wire_size(&all) > TXT_BUDGET || cc_string_too_long(&all));
        // Re-encoding the cut ad keeps it cut.
        assert_eq!(decode_owned(&props_of(&back), 7420).unwrap(), back);
    }

    #[test]
    fn the_largest_fixed_fields_leave_room() {
        let worst = WorkerAd {
            protocol: u32::MAX,
            id: WorkerId::new("i".repeat(WORKER_ID_MAX)).unwrap(),
            name: "n".repeat(NAME_MAX),
            arch: Arch::Other("a".repeat(TOKEN_MAX)),
            slots: u16::MAX,
            free_slots: u16::MAX,
            donating: false,
            reason: Reason::Other("r".repeat(TOKEN_MAX)),
            compilers: vec![],
            compilers_truncated: true,
            port: 1,
            epoch: u64::MAX,
        };
        let props = encode(&worst, u32::MAX).unwrap();
        let size = wire_size(&props);
        // Room left for compilers (`cc=` and a few), even in this worst case.
        assert!(TXT_BUDGET - size >= 80, "{size}");
        assert_eq!(decode_owned(&as_input(&props), 1).unwrap(), worst);
        // A typical ad leaves about 200 bytes.
        let typical = wire_size(
            &encode(
                &WorkerAd {
                    compilers: vec![],
                    ..ad()
                },
                12,
            )
            .unwrap(),
        );
        assert!(TXT_BUDGET - typical >= 190, "{typical}");
    }

    #[test]
    fn encoding_refuses_an_inconsistent_ad() {
        let cases: Vec<(&str, WorkerAd, AdError)> = vec![
            (
                "more free than slots",
                WorkerAd {
                    free_slots: 9,
                    ..ad()
                },
                AdError::invalid("free", "9 free slots of 8"),
            ),
            (
                "no slots",
                WorkerAd {
                    slots: 0,
                    free_slots: 0,
                    ..ad()
                },
                AdError::invalid("slots", "a worker has at least one slot"),
            ),
            (
                "port 0",
                WorkerAd { port: 0, ..ad() },
                AdError::invalid("port", "port 0"),
            ),
            (
                "empty name",
                WorkerAd {
                    name: String::new(),
                    ..ad()
                },
                AdError::invalid("name", "empty"),
            ),
        ];
        for (what, ad, want) in cases {
            assert_eq!(encode(&ad, 0), Err(want), "{what}");
        }
    }

    /// Hostile and broken records: each is a change to a good record, and the error it
    /// must give.
    #[test]
    fn hostile_records() {
        type Edit = fn(&mut Vec<(&'static str, Option<Vec<u8>>)>);
        fn set(p: &mut [(&'static str, Option<Vec<u8>>)], key: &str, val: Option<&[u8]>) {
            for (k, v) in p.iter_mut() {
                if *k == key {
                    *v = val.map(<[u8]>::to_vec);
                }
            }
        }
        fn remove(p: &mut Vec<(&'static str, Option<Vec<u8>>)>, key: &str) {
            p.retain(|(k, _)| *k != key);
        }
        let cases: Vec<(&str, Edit, AdError)> = vec![
            (
                "no txtvers",
                |p| remove(p, "txtvers"),
                AdError::MissingKey { key: "txtvers" },
            ),
            (
                "txtvers 2",
                |p| set(p, "txtvers", Some(b"2")),
                AdError::UnsupportedVersion { found: "2".into() },
            ),
            (
                "txtvers 2 with everything else missing",
                |p| {
                    p.retain(|(k, _)| *k == "txtvers");
                    set(p, "txtvers", Some(b"2"));
                },
                AdError::UnsupportedVersion { found: "2".into() },
            ),
            (
                "txtvers garbage",
                |p| set(p, "txtvers", Some(b"\xff\xfe")),
                AdError::NotUtf8 { key: "txtvers" },
            ),
            (
                "txtvers huge",
                |p| set(p, "txtvers", Some(&[b'1'; 200])),
                AdError::TooLong {
                    key: "txtvers",
                    len: 200,
                    max: 10,
                },
            ),
            (
                "no id",
                |p| remove(p, "id"),
                AdError::MissingKey { key: "id" },
            ),
            (
                "no name",
                |p| remove(p, "name"),
                AdError::MissingKey { key: "name" },
            ),
            (
                "no slots",
                |p| remove(p, "slots"),
                AdError::MissingKey { key: "slots" },
            ),
            (
                "no free",
                |p| remove(p, "free"),
                AdError::MissingKey { key: "free" },
            ),
            (
                "no don",
                |p| remove(p, "don"),
                AdError::MissingKey { key: "don" },
            ),
            (
                "no why",
                |p| remove(p, "why"),
                AdError::MissingKey { key: "why" },
            ),
            (
                "no arch",
                |p| remove(p, "arch"),
                AdError::MissingKey { key: "arch" },
            ),
            (
                "no epoch",
                |p| remove(p, "epoch"),
                AdError::MissingKey { key: "epoch" },
            ),
            (
                "no proto",
                |p| remove(p, "proto"),
                AdError::MissingKey { key: "proto" },
            ),
            (
                "huge name",
                |p| set(p, "name", Some(&[b'n'; 240])),
                AdError::TooLong {
                    key: "name",
                    len: 240,
                    max: NAME_MAX,
                },
            ),
            (
                "huge id",
                |p| set(p, "id", Some(&[b'i'; 250])),
                AdError::TooLong {
                    key: "id",
                    len: 250,
                    max: WORKER_ID_MAX,
                },
            ),
            (
                "name not UTF-8",
                |p| set(p, "name", Some(b"caf\xe9")),
                AdError::NotUtf8 { key: "name" },
            ),
            (
                "name with an escape sequence",
                |p| set(p, "name", Some(b"\x1b[2Jowned")),
                AdError::invalid("name", "contains control characters"),
            ),
            (
                "id with a space",
                |p| set(p, "id", Some(b"a b")),
                AdError::invalid("id", "not printable ASCII (only '!' to '~' are allowed)"),
            ),
            (
                "id empty",
                |p| set(p, "id", Some(b"")),
                AdError::invalid("id", "empty"),
            ),
            (
                "slots with no value",
                |p| set(p, "slots", None),
                AdError::NoValue { key: "slots" },
            ),
            (
                "slots negative",
                |p| set(p, "slots", Some(b"-1")),
                AdError::invalid("slots", "not a decimal number"),
            ),
            (
                "slots with a plus",
                |p| set(p, "slots", Some(b"+8")),
                AdError::invalid("slots", "not a decimal number"),
            ),
            (
                "slots out of range",
                |p| set(p, "slots", Some(b"65536")),
                AdError::invalid("slots", "number out of range"),
            ),
            (
                "slots zero",
                |p| {
                    set(p, "slots", Some(b"0"));
                    set(p, "free", Some(b"0"));
                },
                AdError::invalid("slots", "a worker has at least one slot"),
            ),
            (
                "more free than slots",
                |p| set(p, "free", Some(b"9")),
                AdError::invalid("free", "9 free slots of 8"),
            ),
            (
                "don not a bit",
                |p| set(p, "don", Some(b"2")),
                AdError::invalid("don", "not 0 or 1"),
            ),
            (
                "why not a token",
                |p| set(p, "why", Some(b"on fire")),
                AdError::invalid(
                    "why",
                    "only ASCII letters, digits and '.', '_', '+', '-' are allowed",
                ),
            ),
            (
                "a compiler not a token",
                |p| set(p, "cc", Some(b"gcc-12,rm -rf")),
                AdError::invalid(
                    "cc",
                    "only ASCII letters, digits and '.', '_', '+', '-' are allowed",
                ),
            ),
            (
                "an empty compiler",
                |p| set(p, "cc", Some(b"gcc-12,,clang")),
                AdError::invalid("cc", "empty"),
            ),
            (
                "duplicate key",
                |p| p.push(("free", Some(b"1".to_vec()))),
                AdError::DuplicateKey { key: "free" },
            ),
            (
                "duplicate key in another case",
                |p| p.push(("FREE", Some(b"1".to_vec()))),
                AdError::DuplicateKey { key: "free" },
            ),
            (
                "duplicate txtvers",
                |p| p.push(("TxtVers", Some(b"1".to_vec()))),
                AdError::DuplicateKey { key: "txtvers" },
            ),
            (
                "seq not a number",
                |p| set(p, "seq", Some(b"x")),
                AdError::invalid("seq", "not a decimal number"),
            ),
            (
                "ccmore not a bit",
                |p| p.push(("ccmore", Some(b"2".to_vec()))),
                AdError::invalid("ccmore", "not 0 or 1"),
            ),
        ];
        for (what, edit, want) in cases {
            let mut p = props_of(&ad());
            edit(&mut p);
            assert_eq!(decode_owned(&p, 7420), Err(want), "{what}");
        }
        assert_eq!(
            decode_owned(&props_of(&ad()), 0),
            Err(AdError::invalid("port", "port 0"))
        );
    }

    #[test]
    fn lenient_where_the_schema_says_so() {
        let want = ad();
        // Unknown keys, in any number and size, are ignored; so is a key without a
        // value that nobody knows.
        let mut p = props_of(&want);
        p.push(("future-key", Some(vec![b'x'; 250])));
        p.push(("flag", None));
        p.push(("binary", Some(vec![0xff, 0x00, 0xfe])));
        assert_eq!(decode_owned(&p, 7420).unwrap(), want);
        // Keys are case-insensitive, order does not matter.
        let mut p = props_of(&want);
        p.reverse();
        let p: Vec<_> = p
            .into_iter()
            .map(|(k, v)| (if k == "name" { "NAME" } else { k }, v))
            .collect();
        assert_eq!(decode_owned(&p, 7420).unwrap(), want);
        // No compilers at all, and an empty list, are the same.
        let none = WorkerAd {
            compilers: vec![],
            ..want.clone()
        };
        let mut p = props_of(&none);
        assert_eq!(decode_owned(&p, 7420).unwrap(), none);
        p.push(("cc", Some(vec![])));
        assert_eq!(decode_owned(&p, 7420).unwrap(), none);
        // A compiler named twice is listed once.
        let mut p = props_of(&none);
        p.push(("cc", Some(b"gcc-12,gcc-12".to_vec())));
        assert_eq!(
            decode_owned(&p, 7420).unwrap().compilers,
            [Compiler::new("gcc-12").unwrap()]
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap fuzz: every property of a good record replaced, one at a time, by
        // pseudo-random bytes of every length up to a TXT string.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let good = props_of(&ad());
        for i in 0..good.len() {
            for len in 0..=TXT_STRING_MAX {
                let mut p = good.clone();
                let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                p[i].1 = Some(bytes);
                let _ = decode_owned(&p, 7420);
            }
        }
    }
}
