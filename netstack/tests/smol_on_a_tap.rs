//! SmolNet on a real TAP device, in a network namespace the test creates (root needed): the
//! kernel's own TCP on the other side of the link. Covers what only a real link shows: an
//! outbound connection opened through the connection interface to a server on the kernel side,
//! request and reply intact, with the kernel's partial checksums on the way in.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use kernel_shim::link;
use kernel_shim::ring::{Ring, RingConfig, key_tag};
use netstack::smol::IpCidr;
use netstack::{ConnEvent, ConnId, Forwarder, LinkKind, SmolConfig, SmolNet, TAG_NET, Transport};

const STACK_MAC: [u8; 6] = [0x02, 0x69, 0, 0, 0, 0x02];

#[test]
fn an_outbound_connection_over_the_userspace_stack_reaches_a_kernel_side_server() {
    std::thread::spawn(|| {
        link::unshare_network_namespace().expect("a fresh network namespace (root)");
        let fds = link::open_tap("isotap9", 1, true).expect("TAP");
        link::set_ipv4("isotap9", Ipv4Addr::new(10, 0, 9, 1), 24).unwrap();
        link::set_up("isotap9").unwrap();
        // A server on the kernel side of the link, in the namespace.
        let listener = TcpListener::bind("10.0.9.1:0").unwrap();
        let server_addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, peer) = listener.accept().unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut request = vec![0u8; 64 * 1024 + 10];
            let mut got = 0;
            while got < request.len() {
                let n = stream.read(&mut request[got..]).unwrap();
                assert!(n > 0, "the stack closed before sending the whole request");
                got += n;
            }
            assert!(request.starts_with(b"HELLO FROM SMOLTCP"));
            let reply: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
            stream.write_all(&reply).unwrap();
            peer
        });

        let cidr: IpCidr = "10.0.9.2/24".parse().unwrap();
        let config = SmolConfig { vnet_hdr: true, ..SmolConfig::new(STACK_MAC, vec![cidr], 0) };
        let mut ring = Ring::new(RingConfig::default()).unwrap();
        let mut net =
            SmolNet::new(fds.into_iter().next().unwrap(), LinkKind::Tap, config, Forwarder::single()).unwrap();
        net.start(&mut ring, Instant::now());
        let conn: ConnId = net.connect(&mut ring, server_addr).expect("connect");
        let mut request = b"HELLO FROM SMOLTCP".to_vec();
        request.resize(64 * 1024 + 10, b'.');
        net.send(&mut ring, conn, &request).unwrap();

        let mut connected = false;
        let mut reply = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut completions = Vec::new();
        while reply.len() < 200_000 {
            assert!(
                Instant::now() < deadline,
                "no reply after 20 s (connected: {connected}, got {} bytes)",
                reply.len()
            );
            let timeout = net
                .poll_at()
                .map(|at| at.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_millis(20));
            ring.wait(Some(timeout.min(Duration::from_millis(20))), &mut completions).unwrap();
            let now = Instant::now();
            let mut handle = |event: ConnEvent<'_>| match event {
                ConnEvent::Connected { conn: c } if c == conn => connected = true,
                ConnEvent::Received { conn: c, bytes } if c == conn => reply.extend_from_slice(bytes),
                ConnEvent::ConnectFailed { error, .. } => panic!("connect failed: {error:?}"),
                ConnEvent::Failed { error, .. } => panic!("connection failed: {error:?}"),
                _ => {}
            };
            for completion in completions.drain(..) {
                assert_eq!(key_tag(completion.key), TAG_NET);
                net.on_completion(&mut ring, completion, now, &mut handle);
            }
            net.poll(&mut ring, now, &mut handle);
        }
        assert!(connected);
        let expected: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        assert!(reply == expected, "the reply arrived intact");
        let peer: SocketAddr = server.join().unwrap();
        assert_eq!(peer.ip(), Ipv4Addr::new(10, 0, 9, 2), "the server saw the userspace stack's address");
        assert!(peer.port() >= 49152, "the local port comes from the core's ephemeral range: {peer}");
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}
