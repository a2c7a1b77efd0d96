//! Every key with good and bad values, the grammar, duplicates and the messages.

extern crate std;

use super::keys::*;
use super::*;
use std::string::{String, ToString};

fn err(line: &str) -> String {
    match parse(line) {
        Ok(_) => panic!("{line:?} was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn reported_defects_are_errors_naming_key_value_and_range() {
    // Each of these booted before, silently replaced (LinuxU: 1 CPU, 4/4096/64 MiB, seed 0).
    let cases = [
        (
            "rhea.cpus=0",
            "rhea.cpus=0: expected a whole number from 1 to 64",
        ),
        (
            "rhea.cpus=-1",
            "rhea.cpus=-1: expected a whole number from 1 to 64",
        ),
        (
            "rhea.cpus=abc",
            "rhea.cpus=abc: expected a whole number from 1 to 64",
        ),
        (
            "rhea.mem_mib=0",
            "rhea.mem_mib=0: expected a whole number from 4 to 4096",
        ),
        (
            "rhea.mem_mib=1",
            "rhea.mem_mib=1: expected a whole number from 4 to 4096",
        ),
        (
            "rhea.mem_mib=999999",
            "rhea.mem_mib=999999: expected a whole number from 4 to 4096",
        ),
        (
            "rhea.mem_mib=abc",
            "rhea.mem_mib=abc: expected a whole number from 4 to 4096",
        ),
        (
            "rhea.sim=1 rhea.seed=abc",
            "rhea.seed=abc: expected a whole number from 0 to 18446744073709551615",
        ),
    ];
    for (line, msg) in cases {
        assert_eq!(err(line), msg, "{line}");
    }
}

#[test]
fn every_key_takes_its_values() {
    for key in ALL {
        let good: &[&str] = match key.kind {
            Kind::Flag => &["0", "1"],
            Kind::Number {
                min: 0,
                max: u64::MAX,
            } => &["0", "1", "18446744073709551615"],
            Kind::Number { .. } => &[],
            Kind::Choice(words) | Kind::Set(words) => words,
            Kind::HostPath => &["/", "/tmp/initrd.cpio"],
        };
        for v in good {
            let line = std::format!("{}={v}", key.name);
            assert!(parse(&line).is_ok(), "{line}");
        }
        if let Kind::Number { min, max } = key.kind {
            for n in [min, max, min + (max - min) / 2] {
                let line = std::format!("{}={n}", key.name);
                assert_eq!(Cmdline::new(&line).number(key), Ok(Some(n)), "{line}");
                assert!(parse(&line).is_ok(), "{line}");
            }
            if min > 0 {
                let line = std::format!("{}={}", key.name, min - 1);
                assert!(err(&line).ends_with(&std::format!("expected {}", key.kind)));
            }
            if max < u64::MAX {
                let line = std::format!("{}={}", key.name, max + 1);
                assert!(err(&line).ends_with(&std::format!("expected {}", key.kind)));
            }
        }
    }
}

#[test]
fn every_key_refuses_malformed_values() {
    for key in ALL {
        for bad in [
            "",
            "abc",
            "-1",
            "+1",
            " 1",
            "0x10",
            "1.0",
            "1e3",
            "١",
            "yes",
            "true",
            "on1",
            "2 ",
            "99999999999999999999999",
        ] {
            // " 1" and "2 " split into two words; the first is then `key=` or `key=2`.
            let line = std::format!("{}={bad}", key.name);
            let first = line.split_ascii_whitespace().next().unwrap();
            let ok = match key.kind {
                Kind::Flag => false,
                Kind::Number { min, max } => {
                    first == std::format!("{}=2", key.name) && (min..=max).contains(&2)
                }
                Kind::Choice(_) | Kind::Set(_) | Kind::HostPath => false,
            };
            if ok {
                continue;
            }
            let e = parse(&line).unwrap_err();
            assert_eq!(e.problem, Problem::BadValue(key), "{line:?}");
            assert_eq!(e.key, key.name);
            let msg = e.to_string();
            assert!(
                msg.starts_with(&std::format!("{first}: expected ")),
                "{msg}"
            );
        }
        // A bare key has no value.
        let e = parse(key.name).unwrap_err();
        assert_eq!(e.problem, Problem::MissingValue(key));
        assert!(e.to_string().contains("needs a value"), "{e}");
    }
    assert_eq!(err("rhea.checker=yes"), "rhea.checker=yes: expected 0 or 1");
    assert_eq!(
        err("rhea.trace=sched,disk"),
        "rhea.trace=sched,disk: expected a comma-separated list of sched, irq, net, app, all or off"
    );
    assert!(err("rhea.trace=").ends_with("all or off"));
    assert!(err("rhea.trace=sched,").ends_with("all or off"));
    assert_eq!(
        Cmdline::new("rhea.trace=net,sched rhea.trace=irq,app").set(&TRACE),
        Ok(Some(0b1010)),
        "the last occurrence wins"
    );
    assert_eq!(
        Cmdline::new("rhea.trace=sched,irq,net,app").set(&TRACE),
        Ok(Some(0b1111))
    );
    assert_eq!(Cmdline::new("").set(&TRACE), Ok(None));
    assert_eq!(
        err("rhea.pci.msix=no"),
        "rhea.pci.msix=no: expected on or off"
    );
    assert_eq!(err("rhea.pci.msi=0"), "rhea.pci.msi=0: expected on or off");
    assert_eq!(
        err("rhea.pci.msi=msix"),
        "rhea.pci.msi=msix: expected on or off"
    );
    assert_eq!(
        err("rhea.checker"),
        "rhea.checker: needs a value: rhea.checker=<0 or 1>"
    );
}

#[test]
fn unknown_rhea_keys_are_errors() {
    for line in [
        "rhea.cpu=2",
        "rhea.=1",
        "rhea.checker.x=1",
        "rhea.CPUS=2",
        "rhea.smp=2",
        "rhea.nope",
    ] {
        let e = parse(line).unwrap_err();
        assert_eq!(e.problem, Problem::UnknownKey, "{line}");
    }
    let msg = err("rhea.cpu=2");
    assert!(
        msg.starts_with("rhea.cpu=2: unknown key; known keys: rhea.checker, rhea.cpus"),
        "{msg}"
    );
    assert!(msg.contains("rhea.net.*"), "{msg}");
}

#[test]
fn other_namespaces_and_net_are_not_ours() {
    let line =
        "loops=5 verbose stress.seed=x rhea rhea_cpus=0 rhea.net.ip=dhcp rhea.net.bogus=? a=b=c";
    let c = parse(line).unwrap();
    assert_eq!(c.as_str(), line);
    assert_eq!(c.value("loops"), Some("5"));
    assert_eq!(c.value("verbose"), None);
    assert_eq!(c.value("a"), Some("b=c"));
    assert_eq!(c.value("rhea.net.ip"), Some("dhcp"));
}

#[test]
fn grammar() {
    assert!(parse("").is_ok());
    assert!(parse("   \t\n ").is_ok());
    let c = parse("\trhea.cpus=2\n\nrhea.checker=1  x").unwrap();
    assert_eq!(c.number(&CPUS), Ok(Some(2)));
    assert_eq!(c.flag(&CHECKER), Ok(true));
    let args: std::vec::Vec<Arg<'_>> = c.args().collect();
    assert_eq!(args.len(), 3);
    assert_eq!(
        args[2],
        Arg {
            key: "x",
            value: None
        }
    );
    // Absent keys.
    let c = parse("x=1").unwrap();
    assert_eq!(c.flag(&SIM), Ok(false));
    assert_eq!(c.set(&TRACE), Ok(None));
    assert_eq!(c.number(&SEED), Ok(None));
    assert_eq!(c.choice(&PCI_MSIX), Ok(None));
    assert_eq!(
        parse("rhea.pci.msix=off").unwrap().choice(&PCI_MSIX),
        Ok(Some("off"))
    );
    // The two interrupt keys are independent: each reads only its own argument.
    let both = parse("rhea.pci.msix=off rhea.pci.msi=off rhea.pci.msi=on").unwrap();
    assert_eq!(both.choice(&PCI_MSIX), Ok(Some("off")));
    assert_eq!(both.choice(&PCI_MSI), Ok(Some("on")));
    assert_eq!(
        parse("rhea.pci.msix=off").unwrap().choice(&PCI_MSI),
        Ok(None)
    );
    assert_eq!(parse("rhea.checker=0").unwrap().flag(&CHECKER), Ok(false));
    // The first bad argument, left to right, is the one reported.
    assert_eq!(
        parse("rhea.cpus=x rhea.cpu=1").unwrap_err().key,
        "rhea.cpus"
    );
    assert_eq!(parse("rhea.cpu=1 rhea.cpus=x").unwrap_err().key, "rhea.cpu");
}

#[test]
fn last_occurrence_wins_but_every_one_is_checked() {
    let c = parse("rhea.cpus=4 rhea.checker=1 rhea.cpus=3").unwrap();
    assert_eq!(c.number(&CPUS), Ok(Some(3)));
    assert_eq!(c.value("rhea.cpus"), Some("3"));
    let c = parse("rhea.checker=1 rhea.checker=0").unwrap();
    assert_eq!(c.flag(&CHECKER), Ok(false));
    assert_eq!(
        err("rhea.cpus=abc rhea.cpus=2"),
        "rhea.cpus=abc: expected a whole number from 1 to 64"
    );
    // A single-key read checks every occurrence of that key too.
    let e = Cmdline::new("rhea.cpus=abc rhea.cpus=2")
        .number(&CPUS)
        .unwrap_err();
    assert_eq!(e.value, Some("abc"));
    // ... but only that key: an unchecked line may hold other bad arguments.
    assert_eq!(
        Cmdline::new("rhea.cpu=9 rhea.cpus=2").number(&CPUS),
        Ok(Some(2))
    );
}

#[test]
fn a_long_line_is_read_to_its_end() {
    let mut line = String::new();
    for i in 0..500 {
        line.push_str(&std::format!("pad{i}=xxxxxxxxxxxxxxxx "));
    }
    line.push_str("rhea.checker=1");
    assert!(line.len() > 10_000);
    assert_eq!(parse(&line).unwrap().flag(&CHECKER), Ok(true));
    line.push_str(" rhea.cpus=0");
    assert_eq!(parse(&line).unwrap_err().key, "rhea.cpus");
}

#[test]
fn keys_table_is_sorted_unique_and_namespaced() {
    for pair in ALL.windows(2) {
        assert!(
            pair[0].name < pair[1].name,
            "{} {}",
            pair[0].name,
            pair[1].name
        );
    }
    for k in ALL {
        assert!(k.name.starts_with(PREFIX) && !k.name.starts_with(NET_PREFIX));
        assert!(!k.name.contains(['=', ' ']));
        if let Kind::Number { min, max } = k.kind {
            assert!(min <= max);
        }
    }
}

#[test]
fn whole_numbers() {
    assert_eq!(whole_number("0"), Some(0));
    assert_eq!(whole_number("007"), Some(7));
    assert_eq!(whole_number("18446744073709551615"), Some(u64::MAX));
    assert_eq!(whole_number("18446744073709551616"), None);
    for bad in ["", "+1", "-0", "1_000", "0x1", " 1", "1 "] {
        assert_eq!(whole_number(bad), None, "{bad:?}");
    }
}

#[test]
fn parse_never_panics_on_odd_input() {
    // A tiny deterministic fuzz: every short string over an alphabet that hits the grammar.
    let alphabet = [
        "rhea.", "cpus", "=", "1", "0", " ", "x", "net.", "é", "\t", "checker",
    ];
    let mut n = 0u32;
    let mut stack = std::vec![(String::new(), 0)];
    while let Some((s, depth)) = stack.pop() {
        let _ = parse(&s).map(|c| (c.flag(&CHECKER), c.number(&CPUS), c.value("rhea.cpus")));
        let _ = parse(&s).map_err(|e| e.to_string());
        n += 1;
        if depth < 5 {
            for a in alphabet {
                stack.push((std::format!("{s}{a}"), depth + 1));
            }
        }
    }
    assert!(n > 100_000);
}
