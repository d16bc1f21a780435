//! Which CPUs the attack process and the bench process (responder, honest prober and what
//! they start) run on: on a deployment the attackers send from machines of their own, so
//! here the attack process gets CPUs of its own and the bench the others.

use std::collections::BTreeSet;
use std::str::FromStr;

use anyhow::{bail, Context};
use rustix::process::Pid;
use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};

/// `--attacker-cpus`: a CPU list (`1`, `2-3`, `0,2-3`) or `none` (no pinning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AttackerCpus {
    None,
    List(BTreeSet<usize>),
}

impl FromStr for AttackerCpus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "none" {
            return Ok(Self::None);
        }
        let mut cpus = BTreeSet::new();
        for part in s.split(',') {
            let cpu = |x: &str| {
                x.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|&c| c < CpuSet::MAX_CPU)
                    .ok_or_else(|| format!("{x:?} is not a CPU number (in {s:?})"))
            };
            match part.split_once('-') {
                Some((lo, hi)) => {
                    let (lo, hi) = (cpu(lo)?, cpu(hi)?);
                    if lo > hi {
                        return Err(format!("the range {part:?} is empty"));
                    }
                    cpus.extend(lo..=hi);
                }
                None => {
                    cpus.insert(cpu(part)?);
                }
            }
        }
        Ok(Self::List(cpus))
    }
}

/// `cpus` as the kernel writes a CPU list (`0-2,5`); `none` when empty.
pub(super) fn list(cpus: &BTreeSet<usize>) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for &c in cpus {
        match ranges.last_mut() {
            Some((_, hi)) if *hi + 1 == c => *hi = c,
            _ => ranges.push((c, c)),
        }
    }
    if ranges.is_empty() {
        return "none".into();
    }
    let ranges: Vec<String> = ranges
        .iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect();
    ranges.join(",")
}

/// Where each side runs. Both empty: nothing pinned (`none`, or a single CPU), and the
/// attack's CPU is the responder's and the honest prober's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Placement {
    pub(super) attacker: BTreeSet<usize>,
    pub(super) bench: BTreeSet<usize>,
}

impl Placement {
    /// Splits `allowed` (the CPUs this process may run on): the attacker gets `asked`, or by
    /// default the last allowed CPU when there are at least two; the bench the rest.
    pub(super) fn split(
        allowed: &BTreeSet<usize>,
        asked: Option<&AttackerCpus>,
    ) -> anyhow::Result<Self> {
        let attacker = match asked {
            Some(AttackerCpus::None) => BTreeSet::new(),
            Some(AttackerCpus::List(cpus)) => {
                if let Some(c) = cpus.difference(allowed).next() {
                    bail!(
                        "--attacker-cpus: CPU {c} is not one this process may run on ({})",
                        list(allowed)
                    );
                }
                cpus.clone()
            }
            None if allowed.len() >= 2 => allowed.iter().next_back().into_iter().copied().collect(),
            None => BTreeSet::new(),
        };
        if attacker.is_empty() {
            return Ok(Self {
                attacker,
                bench: BTreeSet::new(),
            });
        }
        let bench: BTreeSet<usize> = allowed.difference(&attacker).copied().collect();
        if bench.is_empty() {
            bail!(
                "--attacker-cpus {} leaves no CPU for the responder and the honest prober",
                list(&attacker)
            );
        }
        Ok(Self { attacker, bench })
    }

    pub(super) fn pinned(&self) -> bool {
        !self.attacker.is_empty()
    }
}

/// The CPUs the calling thread may run on.
pub(super) fn allowed() -> anyhow::Result<BTreeSet<usize>> {
    let set = sched_getaffinity(None).context("sched_getaffinity")?;
    Ok((0..CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect())
}

fn cpu_set(cpus: &BTreeSet<usize>) -> CpuSet {
    let mut set = CpuSet::new();
    for &c in cpus {
        set.set(c);
    }
    set
}

/// Pins every thread of this process to `cpus`; threads and processes started after inherit
/// it (Linux sets affinity per thread, so each existing one is set).
pub(super) fn pin_process(cpus: &BTreeSet<usize>) -> anyhow::Result<()> {
    let set = cpu_set(cpus);
    for task in std::fs::read_dir("/proc/self/task").context("/proc/self/task")? {
        let Some(tid) = task?
            .file_name()
            .to_str()
            .and_then(|t| t.parse().ok())
            .and_then(Pid::from_raw)
        else {
            continue;
        };
        match sched_setaffinity(Some(tid), &set) {
            Ok(()) => {}
            // A thread that ended since the listing.
            Err(rustix::io::Errno::SRCH) => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("pinning thread {tid:?} to CPUs {}", list(cpus)))
            }
        }
    }
    Ok(())
}

/// Pins the calling thread to `cpus` (processes it starts after inherit it).
pub(super) fn pin_thread(cpus: &BTreeSet<usize>) -> anyhow::Result<()> {
    sched_setaffinity(None, &cpu_set(cpus))
        .with_context(|| format!("pinning a thread to CPUs {}", list(cpus)))
}

/// The CPUs process (or thread) `pid` may run on.
pub(super) fn of(pid: u32) -> anyhow::Result<BTreeSet<usize>> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .context("not a process id")?;
    let set = sched_getaffinity(Some(pid)).context("sched_getaffinity")?;
    Ok((0..CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(cpus: &[usize]) -> BTreeSet<usize> {
        cpus.iter().copied().collect()
    }

    #[test]
    fn cpu_lists_parse_as_the_kernel_writes_them() {
        assert_eq!("none".parse(), Ok(AttackerCpus::None));
        assert_eq!("1".parse(), Ok(AttackerCpus::List(set(&[1]))));
        assert_eq!("0,2-4".parse(), Ok(AttackerCpus::List(set(&[0, 2, 3, 4]))));
        for text in ["0-3", "0,2-4,7", "5"] {
            let Ok(AttackerCpus::List(cpus)) = text.parse() else {
                panic!("{text}")
            };
            assert_eq!(list(&cpus), text);
        }
        assert_eq!(list(&set(&[])), "none");
        for bad in [
            "",
            "x",
            "3-1",
            "1,",
            "-1",
            "1-",
            &CpuSet::MAX_CPU.to_string(),
        ] {
            assert!(bad.parse::<AttackerCpus>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn by_default_the_attacker_gets_the_last_cpu_of_two_or_more() {
        let p = Placement::split(&set(&[0, 1, 2, 3]), None).unwrap();
        assert_eq!((p.attacker, p.bench), (set(&[3]), set(&[0, 1, 2])));
        let p = Placement::split(&set(&[0]), None).unwrap();
        assert!(!p.pinned() && p.bench.is_empty());
        let p = Placement::split(&set(&[0, 1]), Some(&AttackerCpus::None)).unwrap();
        assert!(!p.pinned() && p.bench.is_empty());
    }

    #[test]
    fn an_asked_list_must_be_allowed_and_leave_the_bench_a_cpu() {
        let allowed = set(&[0, 1, 2]);
        let asked = |s: &str| s.parse::<AttackerCpus>().unwrap();
        let p = Placement::split(&allowed, Some(&asked("0-1"))).unwrap();
        assert_eq!((p.attacker, p.bench), (set(&[0, 1]), set(&[2])));
        assert!(Placement::split(&allowed, Some(&asked("3"))).is_err());
        assert!(Placement::split(&allowed, Some(&asked("0-2"))).is_err());
    }
}
