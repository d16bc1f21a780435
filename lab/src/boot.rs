//! The lab TD's fake boot: the same measured events go into each vTPM's PCRs, the TCG event
//! log and the TDX CCEL (whose replay the lab TDX quotes report as RTMRs), so the verifier's
//! event-log replays and PCR↔RTMR cross-check have something real to check.

use std::path::Path;

use anyhow::Context;
use locus_analysis::verify::eventlog::{self, EventLogWriter, ALG_SHA256, ALG_SHA384};
use locus_responder::evidence::EventLogPaths;
use locus_responder::tpm::Vtpm;

/// (PCR, event type, data) of the fake boot.
const BOOT: &[(u32, u32, &[u8])] = &[
    (0, 0x8, b"lab CRTM version"),
    (1, 0x8000_0006, b"lab handoff tables"),
    (7, 0x8000_00e0, b"lab secure boot config"),
    (4, 0x8000_0003, b"lab bootloader"),
    (9, 0xd, b"lab kernel command line"),
    (7, eventlog::EV_SEPARATOR, &[0, 0, 0, 0]),
];

/// The boot's logs on disk and the RTMRs a TD that ran it reports.
pub struct Boot {
    pub logs: EventLogPaths,
    pub rtmrs: [[u8; 48]; 4],
}

/// Writes the TCG log and the CCEL of the fake boot into `dir`.
pub fn write_logs(dir: &Path) -> anyhow::Result<Boot> {
    std::fs::create_dir_all(dir)?;
    let mut tcg = EventLogWriter::new(&[ALG_SHA256]);
    let mut ccel = EventLogWriter::new(&[ALG_SHA384]);
    for (pcr, ty, data) in BOOT {
        tcg.push(*pcr, *ty, data);
        if let Some(rtmr) = eventlog::rtmr_for_pcr(*pcr) {
            ccel.push(rtmr as u32 + 1, *ty, data);
        }
    }
    let ccel = ccel.bytes();
    let rtmrs = eventlog::parse(&ccel)
        .context("parsing the lab CCEL")?
        .replay_rtmrs();
    let tcg_path = dir.join("binary_bios_measurements");
    let ccel_path = dir.join("CCEL");
    std::fs::write(&tcg_path, tcg.bytes())?;
    std::fs::write(&ccel_path, &ccel)?;
    Ok(Boot {
        logs: EventLogPaths {
            tcg: Some(tcg_path),
            ccel_table: None,
            ccel_data: Some(ccel_path),
        },
        rtmrs,
    })
}

/// Extends the boot's events into a fresh vTPM's PCRs.
pub fn measure_into(vtpm: &Vtpm) -> anyhow::Result<()> {
    for (pcr, _, data) in BOOT {
        let digest: [u8; 32] = eventlog::hash(ALG_SHA256, data)
            .and_then(|d| d.try_into().ok())
            .context("SHA-256 digest")?;
        vtpm.extend_pcr(u8::try_from(*pcr)?, digest)?;
    }
    Ok(())
}
