//! Checks the contract harness's own helpers (a harness that cannot fail proves nothing).
#![allow(clippy::unwrap_used)]
mod contract;

#[tokio::test]
async fn closed_port_refuses_connections() {
    let address = contract::closed_port();
    assert!(tokio::net::TcpStream::connect(address).await.is_err());
}

#[tokio::test]
async fn black_hole_accepts_and_never_answers() {
    use tokio::io::AsyncReadExt;
    let address = contract::black_hole().await;
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut buffer = [0u8; 1];
    let read = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        stream.read(&mut buffer),
    )
    .await;
    assert!(read.is_err(), "the black hole must not answer");
}
