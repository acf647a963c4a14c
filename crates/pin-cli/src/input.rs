//! Reading PINs: never from the command line (it would show in `ps` and in shell history).
//!
//! On a terminal the PIN is read without echo; otherwise from standard input, one PIN per
//! line, in the order the command asks for them (a change reads the current PIN, then the
//! new one).

use std::io::{BufRead, IsTerminal};

use zeroize::Zeroizing;

use crate::exit::Failure;

/// Longest line read as a PIN; longer input is refused unread.
const MAX_LINE: u64 = 256;

/// Where PINs come from.
#[derive(Debug)]
pub(crate) struct PinReader {
    terminal: bool,
}

impl PinReader {
    /// A reader on the process's terminal or standard input.
    pub(crate) fn new() -> Self {
        Self {
            terminal: std::io::stdin().is_terminal(),
        }
    }

    /// Reads one PIN; `prompt` is shown on a terminal only.
    pub(crate) fn read(&mut self, prompt: &str) -> Result<Zeroizing<String>, Failure> {
        if self.terminal {
            let pin = rpassword::prompt_password(format!("{prompt}: ")).map_err(|e| {
                Failure::input(format!("cannot read the PIN from the terminal: {e}"))
            })?;
            return Ok(Zeroizing::new(pin));
        }
        // Capacity up front: no reallocation, so no stray copies of the PIN.
        let mut line = Zeroizing::new(String::with_capacity(256));
        let stdin = std::io::stdin();
        let mut lock = stdin.lock();
        // Standard input's buffer is shared by every lock, so what follows this line stays
        // there for the next call.
        let n = std::io::Read::take(&mut lock, MAX_LINE)
            .read_line(&mut line)
            .map_err(|e| Failure::input(format!("cannot read the PIN from standard input: {e}")))?;
        if n == 0 {
            return Err(Failure::input(format!(
                "expected the {} on standard input (one PIN per line); PINs are never taken as arguments",
                prompt.to_lowercase()
            )));
        }
        if !line.ends_with('\n') && n as u64 >= MAX_LINE {
            return Err(Failure::input("the PIN line on standard input is too long"));
        }
        let trimmed = Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_owned());
        Ok(trimmed)
    }

    /// Reads a new PIN; on a terminal asks twice and checks both agree.
    pub(crate) fn read_new(&mut self, prompt: &str) -> Result<Zeroizing<String>, Failure> {
        let first = self.read(prompt)?;
        if self.terminal {
            let again = self.read("Repeat the new PIN")?;
            if *again != *first {
                return Err(Failure::input(
                    "the two entries of the new PIN differ; nothing was changed",
                ));
            }
        }
        Ok(first)
    }
}
