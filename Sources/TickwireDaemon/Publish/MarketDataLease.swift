import CTickwireSys
import Foundation
import Synchronization
import TickwireCore
import TickwireNATS
import TickwireRing

/// Which daemon of an active/active pair publishes market data: the one holding a lease kept in the JetStream
/// cluster. Both ingest the same feeds; only the holder's publisher sends (`isActive`).
///
/// The lease is the last message of a small replicated stream, naming its holder. The holder renews it every
/// `term / 6` by publishing again with the stream-wide expected last sequence (sound on replicated streams in
/// nats-server 2.9.10, unlike the per-subject check): two writers racing from the same last sequence cannot both
/// succeed. A holder publishes only until `sent + term − margin` on its own monotonic clock, `sent` being when it
/// sent its last successful renewal; the other takes the lease only after the last message stayed the same for
/// `term + margin` on its clock, counted from when it first saw it (after it was written). So the two never
/// publish at once, whatever the cluster does, as long as the two clocks run at about the same rate.
final class MarketDataLease: @unchecked Sendable {
    struct Config: Sendable {
        var servers: [String]
        var node: String
        var stream = "TICKWIRE_MD_LEASE"
        var subject = "tickwire.md.lease"
        var replicas = 3
        var termMs: Int64 = 3_000
    }

    let config: Config
    private let log: @Sendable (String) -> Void
    /// Monotonic ns until which this daemon may publish (0: not the holder). Read by the publisher per batch.
    private let validUntil = Atomic<Int64>(0)
    private let stopping = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)
    /// Takeovers by this daemon: (the previous holder's last renewal, wall ns; now, wall ns). The publisher takes
    /// them to send a SYS.TAKEOVER notice.
    private let takeovers = Locked<[(from: Int64, to: Int64, previous: String)]>([])
    private var connection: NATSConnection?

    init(_ config: Config, log: @escaping @Sendable (String) -> Void) {
        self.config = config
        self.log = log
    }

    var margin: Int64 { config.termMs * 1_000_000 / 6 }

    /// Whether this daemon may publish now.
    @inline(__always) func isActive(now: Int64 = tw_monotonic_ns()) -> Bool { now < validUntil.load(ordering: .acquiring) }

    func takeTakeovers() -> [(from: Int64, to: Int64, previous: String)] {
        takeovers.withLock { t in defer { t.removeAll() }; return t }
    }

    func start() {
        Thread.detachNewThread { [self] in
            Thread.current.name = "tw-md-lease"
            run()
            done.signal()
        }
    }

    func stop() {
        stopping.store(true, ordering: .releasing)
        done.wait()
    }

    private func run() {
        let term = config.termMs * 1_000_000
        var seen: (seq: UInt64, since: Int64) = (0, 0)
        var holding = false
        var js: JetStream?
        var lastError = ""
        func note(_ text: String) { if text != lastError { log("market data lease: \(text)"); lastError = text } }
        while !stopping.load(ordering: .acquiring) {
            let now = tw_monotonic_ns()
            // The holder stops by itself when its validity passed without a renewal (the publisher checks the
            // time too; this only logs when it happened).
            if holding && !isActive(now: now) {
                holding = false
                let wall = Nanos.now().rawValue - (now - validUntil.load(ordering: .acquiring))
                log("market data: PASSIVE at \(wall) (lease not renewed in time)")
            }
            do {
                if js == nil {
                    var options = NATSConnection.Options(servers: config.servers)
                    options.name = "tickwire-md-lease-\(config.node)"
                    options.retryOnFailedConnect = true
                    connection = try NATSConnection(options)
                    var jsOptions = JetStream.Options()
                    jsOptions.waitMs = min(1_000, config.termMs / 3)
                    js = try connection!.jetStream(jsOptions)
                }
                guard let js else { continue }
                var stream = JetStream.StreamConfig(name: config.stream, subjects: [config.subject])
                stream.replicas = config.replicas
                stream.maxAgeNanos = 24 * 3600 * 1_000_000_000
                stream.denyDeleteAndPurge = false
                // A first message, once (deduplicated): a take always names the sequence it replaces, never "none".
                if seen.seq == 0 {
                    _ = try js.addStream(stream)
                    _ = try js.publish(config.subject, bytes: Array("-".utf8), msgId: "tickwire-md-lease-seed")
                }
                guard let last = try js.lastMessage(stream: config.stream, subject: config.subject) else { continue }
                let holder = String(decoding: last.bytes, as: UTF8.self)
                if last.sequence != seen.seq { seen = (last.sequence, tw_monotonic_ns()) }
                if holder == config.node && holding {
                    let sent = tw_monotonic_ns()
                    let ack = try js.publish(config.subject, bytes: Array(config.node.utf8), expectLastSequence: last.sequence)
                    validUntil.store(sent + term - margin, ordering: .releasing)
                    seen = (ack.sequence, tw_monotonic_ns())
                } else if holder == config.node || tw_monotonic_ns() - seen.since >= term + margin {
                    // Ours from before a restart (it lapsed: we were not publishing), or the holder's lapsed.
                    let sent = tw_monotonic_ns()
                    let ack = try js.publish(config.subject, bytes: Array(config.node.utf8), expectLastSequence: last.sequence)
                    validUntil.store(sent + term - margin, ordering: .releasing)
                    seen = (ack.sequence, tw_monotonic_ns())
                    holding = true
                    let wall = Nanos.now().rawValue
                    takeovers.withLock { $0.append((last.timestampNanos, wall, holder)) }
                    log("market data: ACTIVE since \(wall) (lease seq \(ack.sequence), after \(holder == "-" ? "nobody" : holder) at \(last.timestampNanos))")
                }
                lastError = ""
            } catch {
                // Lost a race (another wrote first), or the cluster did not answer: not the holder past validity.
                note("\(error)")
            }
            let pause = config.termMs * 1_000 / 6
            var slept: Int64 = 0
            while slept < pause && !stopping.load(ordering: .acquiring) { usleep(10_000); slept += 10_000 }
        }
        if holding {
            validUntil.store(0, ordering: .releasing)
            log("market data: PASSIVE at \(Nanos.now().rawValue) (stopping)")
        }
        connection?.close()
    }
}
