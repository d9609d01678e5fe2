import Foundation
import TickwireClient
import TickwireCore
import TickwireNATS
import TickwireTestSupport

/// Support for the NATS tests: a raw libnats collector, draining a Tickwire subscriber, metrics, config files.

/// Every message of one NATS subscription, decoded, in arrival order (a reference independent of TickwireClient).
final class NATSRawCollector: @unchecked Sendable {
    let connection: NATSConnection
    let subscription: NATSSubscription
    let box = NATSTestBox([WireEvent]())
    let undecodable = NATSTestBox(0)
    /// What happened to the connection (a disconnect, a slow-consumer error…), for a failing test to show.
    let connectionEvents = NATSTestBox([String]())

    init(server: String, pattern: String) throws {
        var o = NATSConnection.Options(servers: [server])
        o.maxPendingMessages = 2_000_000
        let seen = connectionEvents
        o.onEvent = { e in seen.update { $0.append("\(Date()): \(e)") } }
        connection = try NATSConnection(o)
        let box = self.box, bad = undecodable
        subscription = try connection.subscribe(pattern, pendingLimit: 2_000_000) { m in
            let subject = m.subject
            guard let (e, s) = m.withBytes({ try? WireCodec.decode($0) }) else { bad.update { $0 += 1 }; return }
            box.update { $0.append(WireEvent(subject: subject, subjectSeq: s, event: e)) }
        }
        try connection.flush()
    }

    var events: [WireEvent] { box.get() }
    var count: Int { box.update { $0.count } }

    /// Why the collection stopped short of `1...expected`: the seqs it lacks, the connection's events, and what
    /// the daemon counted as sent and not sent.
    func shortfall(expected: Int, daemon: DaemonProcess) -> String {
        let got = Set(events.map(\.event.seq))
        let missing = (1...UInt64(expected)).filter { !got.contains($0) }
        return "missing seqs (\(missing.count)): \(missing.prefix(20)); " + connectionReport + "; " + daemon.natsReport
    }

    var connectionReport: String { "the reference collector's connection: \(connectionEvents.get())" }
}

/// What a `Subscriber` delivered until `quietSeconds` passed without anything.
func drain(_ s: Subscriber, quietSeconds: Double = 1.5, limitSeconds: Double = 120) -> [Delivery] {
    var out: [Delivery] = []
    let deadline = Date().addingTimeInterval(limitSeconds)
    while Date() < deadline {
        guard let d = try? s.next(timeoutMs: Int(quietSeconds * 1000)) else { break }
        out.append(d)
    }
    return out
}

/// Waits until `count()` has not moved for `stableSeconds` and is at least `atLeast`.
func waitUntilStable(atLeast: Int, stableSeconds: Double = 2, limitSeconds: Double = 180, _ count: () -> Int) throws {
    let deadline = Date().addingTimeInterval(limitSeconds)
    var last = -1
    var since = Date()
    while Date() < deadline {
        let n = count()
        if n != last { last = n; since = Date() }
        if n >= atLeast && Date().timeIntervalSince(since) >= stableSeconds { return }
        usleep(100_000)
    }
    throw NATSTestTimeout(what: "count \(last) not stable at >= \(atLeast) within \(limitSeconds) s")
}

/// A config file with a simulator of `rate` events a second that stops after `limit`.
func simConfig(rate: Int, limit: Int, extra: String = "") -> String {
    let path = temporaryDirectory("natscfg") + "/tickwire.toml"
    try? "[sim]\nrate = \(rate)\nlimit = \(limit)\n\(extra)".write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

/// A counter's value on a daemon's /metrics (`labels` as rendered, such as `reason="queue_full"`).
extension DaemonProcess {
    /// Messages the daemon counted as not sent to NATS (no connection took them: `send_failed`).
    var natsNotSent: Int { Int(metric(metricsPort, "tickwire_nats_failed_total", "reason=\"send_failed\"") ?? 0) }

    /// What the daemon counted as published to NATS and not, and the end of its log: for a test that found a
    /// message missing to say where it went.
    var natsReport: String {
        let counters = [("tickwire_nats_sent_total", ""), ("tickwire_nats_failed_total", "reason=\"queue_full\""),
                        ("tickwire_nats_failed_total", "reason=\"send_failed\"")].map { name, labels in
            "\(name){\(labels)} = \(metric(metricsPort, name, labels).map { "\($0)" } ?? "?")"
        }
        return counters.joined(separator: ", ") + "; daemon log: \(child.stderr.suffix(1_500))"
    }
}

func metric(_ port: Int, _ name: String, _ labels: String = "") -> Double? {
    guard let data = httpGet(port: port, path: "/metrics") else { return nil }
    let key = labels.isEmpty ? name + " " : name + "{" + labels + "} "
    for line in String(decoding: data, as: UTF8.self).split(separator: "\n") where line.hasPrefix(key) {
        return Double(line.dropFirst(key.count).trimmingCharacters(in: .whitespaces))
    }
    return nil
}

/// Subscriptions the server `i` knows (its own clients' and those its routes brought).
func subscriptionCount(_ cluster: NATSCluster, _ i: Int) -> Int {
    (cluster.monitor(i, "subsz")?["num_subscriptions"] as? Int) ?? 0
}

extension Array where Element == WireEvent {
    /// subject → subject_seqs, in arrival order.
    var seqsBySubject: [String: [UInt64]] {
        var out: [String: [UInt64]] = [:]
        for w in self { out[w.subject, default: []].append(w.subjectSeq) }
        return out
    }
}
