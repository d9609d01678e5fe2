import Foundation
import Testing
import TickwireClient
import TickwireCore
import TickwireNATS
import TickwireTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The subscriber side over NATS (`tail --nats`, Tools/subscribe_nats.py) and the daemon's NATS start-up rules.
@Suite(.serialized, .timeLimit(.minutes(10))) struct NATSClientTests {
    /// `tail --nats` prints the same lines as `tail` over ZeroMQ, and the Python client written from
    /// docs/PROTOCOL.md alone prints the same lines as both.
    @Test func tailOverNATSAndThePythonClientPrintWhatTailOverZeroMQPrints() throws {
        let cluster = try NATSCluster(size: 3, jetStream: false)
        let patterns = ["MD.XNAS.*.TRADE", "MD.XNYS.>"]
        let tail = try ChildProcess(tickwireBinary, ["tail", "--nats", cluster.servers[1].url] + patterns
                                    + ["--count", "600", "--timeout", "60"])
        let py = try ChildProcess("/usr/bin/env", ["python3", packageRoot + "/Tools/subscribe_nats.py"] + patterns
                                  + ["--servers", cluster.servers[2].url, "--count", "600", "--timeout", "60"])
        #expect(py.waitForOutput("subscribed", seconds: 30), "\(py.stderr)")
        // tail: 2 patterns + 1 notice subject; python the same: 6 at server 0 by way of the routes.
        try natsWaitUntil(seconds: 30, "interest on server 0") { subscriptionCount(cluster, 0) >= 6 }
        // The ZeroMQ tail connects before the daemon binds (ZeroMQ retries), so all three see the feed's start.
        let pubPort = freePort()
        let zmqTail = try ChildProcess(tickwireBinary, ["tail", "--connect", "tcp://127.0.0.1:\(pubPort)"] + patterns
                                       + ["--count", "600", "--timeout", "60"])
        usleep(500_000)
        let daemon = try DaemonProcess(["--config", simConfig(rate: 3_000, limit: 30_000), "--nats", cluster.servers[0].url],
                                       pubPort: pubPort)
        #expect(tail.wait(seconds: 120) == 0, "\(tail.stderr)")
        #expect(py.wait(seconds: 120) == 0, "\(py.stderr)")
        #expect(zmqTail.wait(seconds: 120) == 0, "\(zmqTail.stderr)")
        func byKey(_ text: String) -> [String: String] {
            var out = [String: String]()
            for line in text.split(separator: "\n") {
                guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      let subject = obj["subject"] as? String, let s = (obj["subject_seq"] as? NSNumber)?.uint64Value else { continue }
                out["\(subject)#\(s)"] = String(line)
            }
            return out
        }
        let viaNATS = byKey(tail.stdout), viaPython = byKey(py.stdout), viaZMQ = byKey(zmqTail.stdout)
        #expect(viaNATS.count == 600 && viaPython.count == 600 && viaZMQ.count == 600)
        let compiled = try patterns.map { try SubjectPattern($0) }
        #expect(viaNATS.keys.allSatisfy { k in compiled.contains { $0.matches(subjectText: String(k.split(separator: "#")[0])) } })
        // Both NATS subscribers joined before the feed began: each subject from subject_seq 1, no gap.
        #expect(!tail.stderr.contains("gap"), "\(tail.stderr)")
        for (a, b, what) in [(viaNATS, viaPython, "python"), (viaNATS, viaZMQ, "zeromq")] {
            let common = Set(a.keys).intersection(b.keys)
            #expect(common.count >= (what == "python" ? 400 : 100), "\(what): \(common.count) in common")
            for k in common { #expect(a[k] == b[k], "\(what) \(k)") }
        }
        withExtendedLifetime(daemon) {}
    }

    @Test func aBadNATSURLIsAUsageErrorNamingIt() throws {
        let r = try DaemonProcess.tickwire(["run", "--nats", "nats://ok:4222,http://bad:80", "--data", temporaryDirectory("natsbad")])
        #expect(r.status == 64, "\(r.stderr)")
        #expect(r.stderr.contains("'http://bad:80'"), "\(r.stderr)")
        let t = try DaemonProcess.tickwire(["tail", "--nats", "nats://x:notaport", "MD.>"])
        #expect(t.status == 64, "\(t.stderr)")
        #expect(t.stderr.contains("nats://x:notaport"), "\(t.stderr)")
        let cfg = temporaryDirectory("natscfg") + "/t.toml"
        try "[publish.nats]\nrequired = true\n".write(toFile: cfg, atomically: true, encoding: .utf8)
        let c = try DaemonProcess.tickwire(["run", "--config", cfg, "--data", temporaryDirectory("natscfg2")])
        #expect(c.status == 64 && c.stderr.contains("publish.nats.servers"), "\(c.stderr)")
    }

    /// No server at start: with --nats-required the daemon does not start (exit 2, naming the URL); without it,
    /// it starts, says so, connects when a server comes, and tells NATS subscribers what they missed meanwhile.
    @Test func noServerAtStartIsFatalOnlyWhenRequired() throws {
        let cluster = try NATSCluster(size: 1, jetStream: false)
        let url = cluster.servers[0].url
        cluster.kill(0)
        let port = freePort()
        let required = try DaemonProcess.tickwire(["run", "--nats", url, "--nats-required", "--pub", "tcp://127.0.0.1:\(port)",
                                                   "--metrics", "127.0.0.1:\(freePort())", "--trades", "tcp://127.0.0.1:\(freePort())",
                                                   "--data", temporaryDirectory("natsreq")], seconds: 60)
        #expect(required.status == 2, "\(required.stderr)")
        #expect(required.stderr.contains(url), "\(required.stderr)")

        let daemon = try DaemonProcess(["--rate", "1000", "--nats", url])
        #expect(daemon.child.waitForOutput("no server reachable", seconds: 10), "\(daemon.child.stderr)")
        #expect(daemon.child.stderr.contains(url))
        try natsWaitUntil(seconds: 30, "failures counted") {
            (metric(daemon.metricsPort, "tickwire_nats_failed_total", "reason=\"send_failed\"") ?? 0) > 100
        }
        try cluster.start(0)
        try natsWaitUntil(seconds: 60, "connected") { metric(daemon.metricsPort, "tickwire_nats_connected") == 1 }
        try natsWaitUntil(seconds: 30, "GAP notice") { (metric(daemon.metricsPort, "tickwire_nats_gap_notices_total") ?? 0) >= 1 }
        // Every message not sent is reported: those no server took (send_failed) and those dropped while the NATS
        // thread was a queue behind (queue_full; a loaded run had 274 of them beside 4,176 send failures). Read
        // until a scrape finds them equal, for the counts may still move between two scrapes.
        var failed = -1.0, reported = -2.0
        do {
            try natsWaitUntil(seconds: 30, "every message not sent reported") {
                failed = (metric(daemon.metricsPort, "tickwire_nats_failed_total", "reason=\"send_failed\"") ?? -1)
                    + (metric(daemon.metricsPort, "tickwire_nats_failed_total", "reason=\"queue_full\"") ?? 0)
                reported = metric(daemon.metricsPort, "tickwire_nats_reported_lost_total") ?? -2
                return reported == failed
            }
        } catch { Issue.record("not sent \(failed), reported \(reported): \(error)") }
        // And from then on it publishes.
        let sub = try Subscriber(nats: [url], patterns: [try SubjectPattern("MD.>")])
        var got = 0
        for d in drain(sub, quietSeconds: 2, limitSeconds: 3) { if case .event = d { got += 1 } }
        #expect(got > 100)
    }

    /// A subscriber that stops reading loses messages and is told (gaps per subject, drops counted); the feed, the
    /// ZeroMQ subscriber and a healthy NATS subscriber lose nothing.
    @Test func aStalledSubscriberNeverSlowsTheFeedAndIsToldOfItsLoss() throws {
        let cluster = try NATSCluster(size: 3, jetStream: false)
        let md = [try SubjectPattern("MD.>")]
        let healthy = try Subscriber(nats: [cluster.servers[1].url], patterns: md)
        let stalled = try Subscriber(nats: [cluster.servers[2].url], patterns: md, pendingLimit: 1_000)
        try natsWaitUntil(seconds: 30, "interest on server 0") { subscriptionCount(cluster, 0) >= 4 }
        let limit = 20_000
        let daemon = try DaemonProcess(["--config", simConfig(rate: 5_000, limit: limit), "--nats", cluster.servers[0].url])
        let zmq = try Subscriber(endpoint: daemon.pub, patterns: md)
        // The healthy subscriber reads as it comes (on its own thread); the stalled one reads nothing until it has
        // dropped (its 1,000 pending are full, a fraction of the way into the 4 s feed), then reads on, so the
        // feed's later messages show its gaps. (A fixed 2 s stall could, on a loaded machine, cover the feed's end,
        // where a loss has no later message to show it.)
        final class Healthy: @unchecked Sendable {
            let sub: Subscriber
            var events: [WireEvent] = []
            var gaps = 0
            let done = DispatchSemaphore(value: 0)
            init(_ sub: Subscriber) { self.sub = sub }
        }
        let h = Healthy(healthy)
        Thread {
            let deadline = Date().addingTimeInterval(180)
            while Date() < deadline {
                guard let d = try? h.sub.next(timeoutMs: 3_000) else { break }
                if case .event(let w) = d { h.events.append(w) } else { h.gaps += 1 }
            }
            h.done.signal()
        }.start()
        let stallEnds = Date().addingTimeInterval(60)
        while stalled.droppedLocally == 0 && Date() < stallEnds { usleep(10_000) }
        usleep(200_000)
        var stalledGaps = 0, stalledLost: UInt64 = 0, stalledEvents = 0
        for d in drain(stalled) {
            switch d {
            case .gap(_, let first, let last): stalledGaps += 1; stalledLost += last - first + 1
            case .event(let w): if w.subject.hasPrefix("MD.") { stalledEvents += 1 }
            }
        }
        #expect(h.done.wait(timeout: .now() + 200) == .success)
        // The healthy subscriber's deliveries: the feed's events, and the daemon's GAP notices of what it could
        // not send (`SYS.NATS.GAP.MD`, delivered as events numbered on their own subject from 1).
        let healthyEvents = h.events.filter { $0.subject.hasPrefix("MD.") }
        let notices = h.events.filter { $0.subject.hasPrefix(Subscriber.gapNoticePrefix) }
        let healthyGaps = h.gaps
        let sendFailed = metric(daemon.metricsPort, "tickwire_nats_failed_total", "reason=\"send_failed\"") ?? -1
        let disconnects = metric(daemon.metricsPort, "tickwire_nats_disconnects_total") ?? -1
        let seqs = healthyEvents.map(\.event.seq)
        #expect(zip(seqs, seqs.dropFirst()).allSatisfy { $0 < $1 }, "the feed in order, nothing twice")
        if sendFailed == 0 && disconnects == 0 && healthy.reconnects == 0 {
            #expect(healthyGaps == 0 && notices.isEmpty)
            #expect(seqs == Array(1...UInt64(healthyEvents.count)))
            #expect(healthyEvents.count >= limit)
        } else {
            // A connection lost on a starved machine (libnats' PINGs unanswered under load; on a quiet machine the
            // event-loop adapter's empty write lost it until the ninth session's fix, NEXT.md item 4). What the daemon could not send is counted and reported in GAP
            // notices; what was on its way at the loss shows as gaps (docs/PROTOCOL.md, "Delivery is at most
            // once"). Never lost silently. That is not the stalled subscriber's doing, which the rest checks.
            if sendFailed > 0 {
                let reported = metric(daemon.metricsPort, "tickwire_nats_reported_lost_total") ?? -2
                #expect(reported >= sendFailed, "every send that failed is reported: failed \(sendFailed), reported \(reported)")
            }
            #expect(healthyEvents.count >= limit || healthyGaps > 0 || !notices.isEmpty,
                    "a loss is told: \(healthyEvents.count) of \(limit), no gap (send failed \(sendFailed), daemon disconnects \(disconnects), subscriber reconnects \(healthy.reconnects))")
        }
        var zmqGaps = 0, zmqEvents = 0
        for d in drain(zmq) { if case .gap = d { zmqGaps += 1 } else { zmqEvents += 1 } }
        #expect(zmqGaps == 0 && zmqEvents > 1_000)
        #expect(stalled.droppedLocally > 0)
        #expect(stalledGaps > 0, "the stalled subscriber was told of its loss")
        // Every message it did not get is either a reported gap or after the last message of its subject.
        #expect(UInt64(stalledEvents) + stalledLost <= UInt64(healthyEvents.count))
        #expect(metric(daemon.metricsPort, "tickwire_nats_failed_total", "reason=\"queue_full\"") == 0)
    }
}
