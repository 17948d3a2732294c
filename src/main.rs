//! The `ringbroker` binary: parse the command line, run the broker.

use std::process::ExitCode;

use ringbroker_server::config::{parse_command_line, CommandLine};

#[global_allocator]
static ALLOCATOR: ringbroker_protocol::alloc::BrokerAllocator =
    ringbroker_protocol::alloc::BrokerAllocator;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let config = match parse_command_line(std::env::args().skip(1)) {
        Ok(CommandLine::Run { config, warnings }) => {
            for warning in warnings {
                log::warn!("{warning}");
            }
            *config
        }
        Ok(CommandLine::Help(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(CommandLine::Version) => {
            println!("ringbroker {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ringbroker: {e}");
            return ExitCode::from(2);
        }
    };
    match ringbroker_server::runtime::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringbroker: {e}");
            ExitCode::FAILURE
        }
    }
}
