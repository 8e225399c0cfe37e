//! Test-only crash points: `KEYTURN_TEST_CRASH_POINT=before:<Step>` or `after:<Step>` makes the
//! process abort right there, with no cleanup, as a SIGKILL would. The e2e suite uses it to
//! prove that every step resumes correctly; nothing sets it in production.

use keyturn_core::machine::Step;

pub const CRASH_POINT_VARIABLE: &str = "KEYTURN_TEST_CRASH_POINT";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The step is about to run; nothing of it happened yet.
    Before,
    /// The step's effects happened; its outcome is not persisted anywhere yet.
    After,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashPoint {
    pub phase: Phase,
    pub step: Step,
}

impl CrashPoint {
    pub fn parse(text: &str) -> Result<CrashPoint, String> {
        let (phase, step) = text.split_once(':').ok_or_else(|| {
            format!("{CRASH_POINT_VARIABLE}={text:?}: expected before:<Step> or after:<Step>")
        })?;
        let phase = match phase {
            "before" => Phase::Before,
            "after" => Phase::After,
            other => {
                return Err(format!(
                    "{CRASH_POINT_VARIABLE}: unknown phase {other:?} (before or after)"
                ));
            }
        };
        let step = Step::ALL
            .into_iter()
            .find(|candidate| candidate.as_str() == step)
            .ok_or_else(|| format!("{CRASH_POINT_VARIABLE}: unknown step {step:?}"))?;
        Ok(CrashPoint { phase, step })
    }

    pub fn from_environment() -> Result<Option<CrashPoint>, String> {
        match std::env::var(CRASH_POINT_VARIABLE) {
            Ok(text) if !text.is_empty() => CrashPoint::parse(&text).map(Some),
            _ => Ok(None),
        }
    }

    /// Aborts the process when `phase` of `step` is this crash point.
    pub fn check(&self, phase: Phase, step: Step) {
        if self.phase == phase && self.step == step {
            eprintln!(
                "{{\"level\":\"ERROR\",\"message\":\"crash point {phase:?}:{step} reached; aborting\"}}"
            );
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_step_and_rejects_nonsense() {
        for step in Step::ALL {
            assert_eq!(
                CrashPoint::parse(&format!("after:{step}")).unwrap(),
                CrashPoint {
                    phase: Phase::After,
                    step
                }
            );
        }
        assert!(CrashPoint::parse("during:Apply").is_err());
        assert!(CrashPoint::parse("before:Dance").is_err());
        assert!(CrashPoint::parse("Apply").is_err());
    }
}
