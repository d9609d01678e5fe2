import Foundation
import Testing
import TickwireClient
import TickwireCore
import TickwireNATS
import TickwireTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `tickwire run --source nats:URL#PATTERN`: an edge daemon fed from a NATS cluster.
@Suite(.serialized, .timeLimit(.minutes(10))) struct NATSSourceTests {
    /// Well-formed messages come out of the edge daemon's ZeroMQ in order, renumbered, bodies intact; hostile ones
    /// (a subject Tickwire does not accept, payloads that do not decode) are counted by kind; the daemon goes on.
    @Test func anEdgeDaemonRelaysWellFormedMessagesAndCountsHostileOnes() throws {
        let cluster = try NATSCluster(size: 3, jetStream: false)
        let edge = try DaemonProcess(["--source", "nats:\(cluster.servers[1].url),\(cluster.servers[2].url)#MD.XNAS.>"])
        let zmq = try Subscriber(endpoint: edge.pub, patterns: [try SubjectPattern("MD.XNAS.>")])
        let upstream = try NATSConnection(.init(servers: [cluster.servers[0].url]))
        func quote(_ i: Int) -> [UInt8] {
            var e = Event.quote(0, bid: Price(e8: Int64(i)), bidSize: Quantity(e8: 1), ask: Price(e8: Int64(i) + 1),
                                askSize: Quantity(e8: 2), eventTime: Nanos.now(), knownTime: Nanos.now())
            e.seq = UInt64(i) + 1_000
            return WireCodec.encode(e, subjectSeq: UInt64(i) + 1_000)
        }
        // Joined once a warm-up message makes the whole trip.
        var joined = false
        for _ in 0..<300 where !joined {
            try upstream.publish(subject: "MD.XNAS.WARM.QUOTE", bytes: quote(0))
            try upstream.flush()
            joined = (try zmq.next(timeoutMs: 100)) != nil
        }
        #expect(joined)
        while try zmq.next(timeoutMs: 300) != nil {}

        var version99 = quote(1); version99[0] = 99
        var kind77 = quote(1); kind77[1] = 77
        var longBody = quote(1); longBody[6] = 200
        let badPayloads: [[UInt8]] = [[], Array(quote(1).prefix(20)), version99, kind77, longBody]
        let badSubjects = ["MD.XNAS.A$B.QUOTE", "MD.XNAS." + String(repeating: "X", count: 300) + ".QUOTE",
                           "MD.XNAS." + Array(repeating: "T", count: 20).joined(separator: ".")]
        let total = 3_000
        var sentPayloads = 0, sentSubjects = 0
        for i in 1...total {
            try upstream.publish(subject: "MD.XNAS.S\(i % 7).QUOTE", bytes: quote(i))
            if i % 40 == 0 {
                try upstream.publish(subject: "MD.XNAS.BAD.QUOTE", bytes: badPayloads[sentPayloads % badPayloads.count])
                sentPayloads += 1
            }
            if i % 100 == 0 {
                try upstream.publish(subject: badSubjects[sentSubjects % badSubjects.count], bytes: quote(i))
                sentSubjects += 1
            }
            try upstream.publish(subject: "MD.XNYS.OTHER.QUOTE", bytes: quote(i))   // outside the pattern
        }
        try upstream.flush()

        var expected = 1
        var bad: [String] = []
        var lastSeq: UInt64 = 0
        while expected <= total {
            guard let d = try zmq.next(timeoutMs: 10_000) else { bad.append("timed out at \(expected)"); break }
            guard case .event(let w) = d else { bad.append("gap before \(expected)"); continue }
            if w.subject != "MD.XNAS.S\(expected % 7).QUOTE" || w.event.a != Int64(expected) || w.event.c != Int64(expected) + 1 {
                bad.append("message \(expected): \(w.subject) bid \(w.event.a)")
            }
            // Renumbered by the edge daemon: its own gapless seq, not the upstream's.
            if lastSeq != 0 && w.event.seq != lastSeq + 1 { bad.append("seq \(w.event.seq) after \(lastSeq)") }
            lastSeq = w.event.seq
            expected += 1
        }
        #expect(bad.isEmpty, "\(bad.prefix(5))")
        #expect(lastSeq < 1_000 + UInt64(total))

        func counter(_ name: String) -> Double? {
            guard let data = httpGet(port: edge.metricsPort, path: "/metrics") else { return nil }
            let line = String(decoding: data, as: UTF8.self).split(separator: "\n").first {
                $0.hasPrefix("tickwire_source_total{") && $0.contains("counter=\"\(name)\"") && $0.contains("nats:")
            }
            return line.flatMap { Double($0.split(separator: " ").last ?? "") }
        }
        #expect(counter("malformed_payload") == Double(sentPayloads))
        #expect(counter("malformed_subject") == Double(sentSubjects))
        #expect(counter("malformed") == Double(sentPayloads + sentSubjects))
        #expect(edge.child.isRunning)
    }

    @Test func aBadNATSSourceSpecIsAClearStartError() throws {
        let r = try DaemonProcess.tickwire(["run", "--source", "nats:http://x:1#MD.>", "--pub", "tcp://127.0.0.1:\(freePort())",
                                            "--metrics", "127.0.0.1:\(freePort())", "--trades", "tcp://127.0.0.1:\(freePort())",
                                            "--data", temporaryDirectory("natssrc")])
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stderr.contains("nats:http://x:1#MD.>") && r.stderr.contains("'http://x:1'"), "\(r.stderr)")
    }
}
