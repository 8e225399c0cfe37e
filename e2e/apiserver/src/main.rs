//! `keyturn-apiserver`: serves the in-memory Kubernetes API stand-in on a loopback port and
//! prints its URL; `--crd FILE` (repeatable) registers CRDs, `--kubeconfig FILE` writes a kubeconfig.

use std::time::Duration;

fn usage() -> ! {
    eprintln!(
        "usage: keyturn-apiserver [--port N] [--crd FILE]... [--kubeconfig OUT] [--history N] [--bookmark-secs N]\n\
         Serves an in-memory Kubernetes API stand-in on 127.0.0.1:N (0 = any free port) and prints its URL."
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut config = keyturn_apiserver::Config::default();
    let mut kubeconfig = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--port" => config.port = val().parse().unwrap_or_else(|_| usage()),
            "--crd" => {
                let path = val();
                match std::fs::read_to_string(&path) {
                    Ok(s) => config.crds.push(s),
                    Err(e) => {
                        eprintln!("keyturn-apiserver: reading {path}: {e}");
                        std::process::exit(1);
                    }
                }
            }
            "--kubeconfig" => kubeconfig = Some(val()),
            "--history" => config.history_limit = val().parse().unwrap_or_else(|_| usage()),
            "--bookmark-secs" => {
                config.bookmark_interval =
                    Duration::from_secs(val().parse().unwrap_or_else(|_| usage()));
            }
            _ => usage(),
        }
    }
    let handle = match keyturn_apiserver::start(config).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("keyturn-apiserver: {e}");
            std::process::exit(1);
        }
    };
    if let Some(path) = kubeconfig
        && let Err(e) = std::fs::write(&path, handle.kubeconfig_yaml())
    {
        eprintln!("keyturn-apiserver: writing {path}: {e}");
        std::process::exit(1);
    }
    println!("{}", handle.url());
    let _ = tokio::signal::ctrl_c().await;
}
