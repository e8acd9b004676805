//! The `pigeon` command: `serve` runs the service, `migrate` prepares the database, `token`
//! mints a JWT, `bench` load-tests a running server.

use std::net::TcpListener;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use uuid::Uuid;

use pigeon::auth::{self, Keys, Role};
use pigeon::config::Settings;

#[derive(Parser)]
#[command(name = "pigeon", version, about = "Pigeon, a notification engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (HTTP API, pigeons, channels).
    Serve,
    /// Create the database if missing, run migrations, and exit.
    Migrate,
    /// Print a signed JWT on stdout.
    Token {
        /// root | admin | sender | subscriber
        #[arg(long)]
        role: String,
        /// The tenant the token acts in.
        #[arg(long)]
        tenant: Option<Uuid>,
        /// The user or service the token speaks for.
        #[arg(long, default_value = "pigeon-cli")]
        sub: String,
        /// WebSocket topics a subscriber may join (comma-separated); default any.
        #[arg(long, value_delimiter = ',')]
        topics: Option<Vec<String>>,
        /// Lifetime in seconds (default from config).
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Load-test a running server: send, deliver, baseline (see `pigeon::bench`).
    Bench(pigeon::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pigeon: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Token {
            role,
            tenant,
            sub,
            topics,
            ttl,
        } => token(&settings, &role, tenant, &sub, topics, ttl),
        Command::Migrate => {
            pigeon::init_tracing(&settings.log);
            actix_rt::System::new().block_on(async {
                pigeon::store::create_database_if_missing(&settings.database.url).await?;
                pigeon::store::run_migrations(&settings.database.url).await?;
                Ok::<_, Box<dyn std::error::Error>>(())
            })
        }
        Command::Serve => {
            pigeon::init_tracing(&settings.log);
            serve(settings)
        }
        Command::Bench(args) => {
            pigeon::init_tracing(&settings.log);
            pigeon::bench::run(&settings, args).map_err(Into::into)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "pigeon failed");
            eprintln!("pigeon: {e}");
            ExitCode::FAILURE
        }
    }
}

fn token(
    settings: &Settings,
    role: &str,
    tenant: Option<Uuid>,
    sub: &str,
    topics: Option<Vec<String>>,
    ttl: Option<u64>,
) -> Result<(), Box<dyn std::error::Error>> {
    let role = Role::parse(role).ok_or("role must be root, admin, sender or subscriber")?;
    if role != Role::Root && tenant.is_none() {
        return Err("--tenant is required for this role".into());
    }
    let claims = auth::claims(
        role,
        tenant,
        sub,
        topics,
        ttl.unwrap_or(settings.auth.token_ttl_secs),
    );
    println!("{}", Keys::new(&settings.auth.jwt_secret).sign(&claims)?);
    Ok(())
}

fn serve(settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))?;
    actix_rt::System::new().block_on(async move {
        let service = pigeon::start(settings, listener, None).await?;
        service.run().await?;
        Ok(())
    })
}
