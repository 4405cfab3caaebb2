//! The flytube command: parse the command line, validate settings, start logging, run.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use flytube::cli::{CheckOptions, Cli, Command, HealthOptions, Options};
use flytube::notify::{self, DEFAULT_STATUS_FILE};
use flytube::settings::PASSPHRASE_ENV;
use flytube::signals;
use flytube::supervisor::Supervisor;
use flytube::{Error, Settings, check, logging};

fn main() -> ExitCode {
    let env: HashMap<String, String> = std::env::vars().collect();
    let cli = match Cli::parse_checked(&env) {
        Ok(cli) => cli,
        Err(message) => return fail(&Error::Config(message)),
    };
    match &cli.command {
        Command::Run(options) => run(options, &env),
        Command::Config(options) => match Settings::build(options, &env) {
            Ok(settings) => {
                print!("{}", settings.render());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Check(options) => check(options, &env),
        Command::Health(options) => health(options),
    }
}

fn run(options: &Options, env: &HashMap<String, String>) -> ExitCode {
    let settings = match Settings::build(options, env) {
        Ok(settings) => settings,
        Err(e) => return fail(&e),
    };
    forget_passphrase_variable(env);
    // Before any thread starts: mallopt is not for a running multi-threaded program.
    let heap_tuned = flytube::heap::keep_heap_top();
    logging::init(settings.log.level, settings.log.format);
    if !heap_tuned {
        log::debug!("the C library refused the malloc settings (heap.rs); its defaults stay");
    }
    let mut supervisor = match Supervisor::new(settings) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let (options, env) = (options.clone(), env.clone());
    supervisor.set_reloader(Box::new(move || Settings::build(&options, &env)));
    if let Err(e) = signals::spawn(supervisor.stop_handle(), supervisor.reload_handle()) {
        return fail(&e);
    }
    match supervisor.run() {
        Ok(()) => ExitCode::SUCCESS,
        // The supervisor has logged it already.
        Err(e) => exit_code(e.exit_code()),
    }
}

fn check(options: &CheckOptions, env: &HashMap<String, String>) -> ExitCode {
    let code = match Settings::build_for_check(&options.options, env) {
        Ok(settings) => {
            // The report is the output; only errors go to the log.
            logging::init(log::LevelFilter::Error, settings.log.format);
            check::run(&settings, options.json)
        }
        Err(e) => check::report_invalid_settings(&e, options.json),
    };
    exit_code(code)
}

fn health(options: &HealthOptions) -> ExitCode {
    let path = options
        .status_file
        .clone()
        .or_else(notify::default_status_file)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATUS_FILE));
    let (healthy, line) = notify::health(&path);
    println!("{line}");
    if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The passphrase variable has been read: take it out of the environment so that nothing
/// flytube starts inherits it and nothing in the process reads it again. (The kernel's copy
/// in /proc/PID/environ stays, readable by the same user and root: a passphrase file or a
/// systemd credential is the better place, see `man flytube`.)
#[allow(unsafe_code)]
fn forget_passphrase_variable(env: &HashMap<String, String>) {
    if env.contains_key(PASSPHRASE_ENV) {
        // SAFETY: called from main before any thread is started, so no other thread can be
        // reading the environment (the reason remove_var is unsafe).
        unsafe { std::env::remove_var(PASSPHRASE_ENV) };
    }
}

fn fail(error: &Error) -> ExitCode {
    eprintln!(
        "flytube: {}",
        flytube::text::escape_untrusted(&error.to_string())
    );
    exit_code(error.exit_code())
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
