//! The flytube command: parse the command line, validate settings, start logging, run.

use std::collections::HashMap;
use std::process::ExitCode;

use clap::Parser;
use flytube::cli::{Cli, Command};
use flytube::error::EXIT_OTHER;
use flytube::supervisor::Supervisor;
use flytube::{Error, Settings, logging};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: HashMap<String, String> = std::env::vars().collect();
    let settings = match Settings::build(cli.command.options(), &env) {
        Ok(settings) => settings,
        Err(e) => return fail(&e),
    };
    match cli.command {
        Command::Config(_) => {
            print!("{}", settings.render());
            ExitCode::SUCCESS
        }
        Command::Run(_) => {
            logging::init(settings.log_level, settings.log_format);
            let supervisor = match Supervisor::new(settings) {
                Ok(s) => s,
                Err(e) => return fail(&e),
            };
            let stop = supervisor.stop_handle();
            if let Err(e) = ctrlc::set_handler(move || stop.stop()) {
                return fail(&Error::Local(format!("cannot install signal handler: {e}")));
            }
            match supervisor.run() {
                Ok(()) => ExitCode::SUCCESS,
                // The supervisor has logged it already.
                Err(e) => ExitCode::from(e.exit_code() as u8),
            }
        }
    }
}

fn fail(error: &Error) -> ExitCode {
    eprintln!("flytube: {error}");
    let code = error.exit_code();
    ExitCode::from(if code == 0 {
        EXIT_OTHER as u8
    } else {
        code as u8
    })
}
