import Foundation
import Testing
import TickwireCore
import TickwireDaemon
import TickwireTestSupport
import TickwireZMQ

/// The `zmq:` source (fan-in from another Tickwire publisher): every well-formed message comes out of the daemon's
/// own publisher once, in order, with its body intact; hostile ones are counted and dropped, and the daemon goes on.
@Suite(.serialized) struct RelaySourceTests {
    @Test func relaysWellFormedMessagesInOrderAndCountsTheRest() throws {
        let ctx = ZMQContext()
        let upstream = try ctx.socket(.pub)
        try upstream.setSendHighWaterMark(0)
        let inPort = freePort()
        try upstream.bind("tcp://127.0.0.1:\(inPort)")
        let d = inProcessDaemon("relay") { c in
            c.sources = ["zmq:tcp://127.0.0.1:\(inPort)"]
            c.publishHighWaterMark = 0
            c.publishMemoryBudgetMB = 0   // lossless: the reading subscriber is never cut, however far behind
        }
        let c = d.config
        try d.start()
        defer { d.shutdown(); try? FileManager.default.removeItem(atPath: c.dataDirectory) }

        let sub = try ctx.socket(.sub)
        try sub.setReceiveHighWaterMark(0)
        try sub.subscribe("MD.XNAS.")
        try sub.connect(c.publishEndpoint)
        try sub.setReceiveTimeout(milliseconds: 50)
        func quote(_ i: Int) -> [UInt8] {
            var e = Event.quote(0, bid: Price(e8: Int64(i)), bidSize: Quantity(e8: 1), ask: Price(e8: Int64(i) + 1),
                                askSize: Quantity(e8: 2), eventTime: Nanos(1_700_000_000_000_000_000), knownTime: Nanos(1_700_000_000_000_000_000))
            e.seq = UInt64(i)
            return WireCodec.encode(e, subjectSeq: UInt64(i))
        }
        // Joined both ways once a warm-up message makes the whole trip.
        let warm = [Array("MD.XNAS.WARM.QUOTE".utf8), quote(0)]
        var joined = false, warmUps = 0
        for _ in 0..<200 where !joined {
            try upstream.sendMultipart(warm)
            warmUps += 1
            joined = try sub.receiveMultipart() != nil
        }
        #expect(joined)
        usleep(100_000)
        while try sub.receiveMultipart(dontWait: true) != nil {}

        var corruptVersion = quote(1)
        corruptVersion[0] = 99
        let hostile: [[[UInt8]]] = [
            [Array("MD.XNAS.ONE.QUOTE".utf8)],                                     // one frame
            [Array("MD.XNAS.AAPL.QUOTE".utf8), quote(1), quote(2)],                 // three frames
            [Array("MD.XNAS.AAPL.QUOTE".utf8), corruptVersion],                     // payload version 99
            [Array("MD.XNAS.AAPL.QUOTE".utf8), Array(quote(1).prefix(20))],         // truncated payload
            [Array("MD.XNAS.*.QUOTE".utf8), quote(1)],                              // a wildcard as a subject
            [Array("MD..AAPL".utf8), quote(1)],                                     // an empty token
        ]
        let total = 3_000
        var sentHostile = 0
        for i in 1...total {
            try upstream.sendMultipart([Array("MD.XNAS.S\(i % 7).QUOTE".utf8), quote(i)])
            if i % 50 == 0 {
                try upstream.sendMultipart(hostile[sentHostile % hostile.count])
                sentHostile += 1
            }
        }

        try sub.setReceiveTimeout(milliseconds: 5_000)
        var expected = 1
        var bad: [String] = []
        while expected <= total {
            guard let frames = try sub.receiveMultipart() else { bad.append("timed out at \(expected)"); break }
            guard frames.count == 2, let (e, _) = try? WireCodec.decode(frames[1]) else { bad.append("undecodable at \(expected)"); break }
            if String(decoding: frames[0], as: UTF8.self) != "MD.XNAS.S\(expected % 7).QUOTE" || e.a != Int64(expected) || e.c != Int64(expected) + 1 {
                bad.append("message \(expected): \(String(decoding: frames[0], as: UTF8.self)) bid \(e.a)")
            }
            expected += 1
        }
        #expect(bad.isEmpty, "\(bad.prefix(5))")
        #expect(try sub.receiveMultipart(dontWait: true) == nil, "nothing beyond the well-formed messages")
        let counters = try #require(d.statistics().sources.first { $0.name.hasPrefix("zmq:") }?.counters)
        #expect(counters.first { $0.name == "malformed" }?.value == UInt64(sentHostile))
        // The six hostile messages went sentHostile / 6 times each, two of each kind: bad framing, payload, subject.
        for kind in ["malformed_frames", "malformed_payload", "malformed_subject"] {
            #expect(counters.first { $0.name == kind }?.value == UInt64(sentHostile / 3), "\(kind)")
        }
        // Warm-ups sent before the source had joined never reached it; the one that made the trip did.
        let events = counters.first { $0.name == "events" }?.value ?? 0
        #expect(events >= UInt64(total + 1) && events <= UInt64(total + warmUps))
    }

    /// Relayed events interleaved in the ring with a simulator's: every message the daemon publishes is the exact
    /// encoding of what it says (none of the upstream's numbers left), `seq` is gapless over the MD stream and
    /// `subject_seq` per subject across both sources, and each relayed body is the one sent. (It pinned the
    /// numbering of relayed frames sent on in place, tried and not kept: BENCH-HISTORY E14.)
    @Test func relayedEventsAreNumberedAnewAmongAnotherSourcesEvents() throws {
        let ctx = ZMQContext()
        let upstream = try ctx.socket(.pub)
        try upstream.setSendHighWaterMark(0)
        let inPort = freePort()
        try upstream.bind("tcp://127.0.0.1:\(inPort)")
        let d = inProcessDaemon("relay-in-place") { c in
            c.sources = ["zmq:tcp://127.0.0.1:\(inPort)", "sim"]
            c.simRate = 20_000
            c.publishHighWaterMark = 0
            c.publishMemoryBudgetMB = 0
        }
        let c = d.config
        try d.start()
        defer { d.shutdown(); try? FileManager.default.removeItem(atPath: c.dataDirectory) }
        let sub = try ctx.socket(.sub)
        try sub.setReceiveHighWaterMark(0)
        try sub.subscribe("MD.")
        try sub.connect(c.publishEndpoint)
        try sub.setReceiveTimeout(milliseconds: 50)
        func quote(_ i: Int) -> [UInt8] {
            var e = Event.quote(0, bid: Price(e8: Int64(i)), bidSize: Quantity(e8: 1), ask: Price(e8: Int64(i) + 1),
                                askSize: Quantity(e8: 2), eventTime: Nanos(1_700_000_000_000_000_000), knownTime: Nanos(1_700_000_000_000_000_000))
            // The upstream's own numbers, which the daemon must replace.
            e.seq = 0xDEAD_BEEF_0000 + UInt64(i)
            return WireCodec.encode(e, subjectSeq: 0xFEED_0000 + UInt64(i))
        }
        var joined = false
        for _ in 0..<200 where !joined {
            try upstream.sendMultipart([Array("MD.RELAY.WARM.QUOTE".utf8), quote(0)])
            // The simulator's messages keep coming: read until the warm-up's, or for at most ~50 ms more.
            var reads = 0
            while !joined, reads < 2_000, let f = try sub.receiveMultipart() {
                joined = f.first.map { String(decoding: $0, as: UTF8.self) } == "MD.RELAY.WARM.QUOTE"
                reads += 1
            }
        }
        #expect(joined)
        let total = 20_000
        for i in 1...total { try upstream.sendMultipart([Array("MD.RELAY.S\(i % 5).QUOTE".utf8), quote(i)]) }

        try sub.setReceiveTimeout(milliseconds: 5_000)
        var relayed = 0, others = 0, lastSeq: UInt64 = 0
        var subjectSeqs: [String: UInt64] = [:], problems: [String] = []
        while relayed < total && problems.count < 5 {
            guard let frames = try sub.receiveMultipart() else { problems.append("timed out after \(relayed) relayed"); break }
            let subject = String(decoding: frames[0], as: UTF8.self)
            guard frames.count == 2, frames[1].count == WireCodec.payloadSize, let (e, subjectSeq) = try? WireCodec.decode(frames[1]) else {
                problems.append("\(subject): not one well-formed payload"); continue
            }
            if WireCodec.encode(e, subjectSeq: subjectSeq) != frames[1] { problems.append("\(subject) seq \(e.seq): bytes beyond its encoding") }
            if lastSeq != 0 && e.seq != lastSeq + 1 { problems.append("\(subject): seq \(e.seq) after \(lastSeq)") }
            lastSeq = e.seq
            if let before = subjectSeqs[subject], subjectSeq != before + 1 { problems.append("\(subject): subject_seq \(subjectSeq) after \(before)") }
            subjectSeqs[subject] = subjectSeq
            guard subject.hasPrefix("MD.RELAY.S") else { others += 1; continue }
            relayed += 1
            if subject != "MD.RELAY.S\(relayed % 5).QUOTE" || e.a != Int64(relayed) || e.c != Int64(relayed) + 1 {
                problems.append("relayed \(relayed): \(subject) bid \(e.a)")
            }
        }
        #expect(problems.isEmpty, "\(problems)")
        #expect(relayed == total && others > 0, "\(relayed) relayed, \(others) from the simulator")
    }

    /// A foreign publisher's flood of dates (1677 to 2262, the extremes included): every event is relayed on the
    /// wire, but only those near now are stored — one date folder, not thousands — and the rest are counted.
    @Test func aFloodOfDatesIsPublishedButNotStored() throws {
        let ctx = ZMQContext()
        let upstream = try ctx.socket(.pub)
        try upstream.setSendHighWaterMark(0)
        let inPort = freePort()
        try upstream.bind("tcp://127.0.0.1:\(inPort)")
        let d = inProcessDaemon("relay-dates") { c in
            c.sources = ["zmq:tcp://127.0.0.1:\(inPort)"]
            c.publishHighWaterMark = 0
        }
        let c = d.config
        try d.start()
        var stopped = false
        defer { if !stopped { d.shutdown() }; try? FileManager.default.removeItem(atPath: c.dataDirectory) }
        let sub = try ctx.socket(.sub)
        try sub.setReceiveHighWaterMark(0)
        try sub.subscribe("MD.XNAS.")
        try sub.connect(c.publishEndpoint)
        try sub.setReceiveTimeout(milliseconds: 50)
        let now = Nanos.now().rawValue
        func quote(_ i: Int, at t: Int64) -> [[UInt8]] {
            var e = Event.quote(0, bid: Price(e8: Int64(i)), bidSize: Quantity(e8: 1), ask: Price(e8: Int64(i) + 1),
                                askSize: Quantity(e8: 2), eventTime: Nanos(t), knownTime: Nanos(now))
            e.seq = UInt64(i)
            return [Array("MD.XNAS.D\(i % 5).QUOTE".utf8), WireCodec.encode(e, subjectSeq: UInt64(i))]
        }
        var joined = false
        for _ in 0..<200 where !joined {
            try upstream.sendMultipart(quote(0, at: now))
            joined = try sub.receiveMultipart() != nil
        }
        #expect(joined)
        usleep(100_000)
        while try sub.receiveMultipart(dontWait: true) != nil {}

        var rng = SystemRandomNumberGenerator()
        let total = 5_000
        var near = 0
        for i in 1...total {
            let t: Int64
            switch i % 10 {
            case 0: t = now + Int64.random(in: -3_600...3_600, using: &rng) * Nanos.perSecond; near += 1
            case 1: t = i % 20 == 1 ? Int64.min : Int64.max
            default:   // anywhere in 1677…2262 but the two days around now
                let day = Nanos.perDay
                t = Bool.random(using: &rng) ? Int64.random(in: Int64.min...(now - 2 * day), using: &rng)
                                             : Int64.random(in: (now + 2 * day)...Int64.max, using: &rng)
            }
            try upstream.sendMultipart(quote(i, at: t))
        }
        try sub.setReceiveTimeout(milliseconds: 5_000)
        // Counted by bid (quote i bids i), so a late warm-up (bid 0) is not taken for the last event.
        var received = 0
        while received < total, let frames = try sub.receiveMultipart() {
            if frames.count == 2, let (e, _) = try? WireCodec.decode(frames[1]), e.a > 0 { received += 1 }
        }
        #expect(received == total, "every event is on the wire")
        let t0 = Date()
        d.shutdown()
        stopped = true
        #expect(Date().timeIntervalSince(t0) < 20, "stopping sealed a flood of partitions")
        let dates = try FileManager.default.contentsOfDirectory(atPath: c.dataDirectory + "/store").filter { $0.first?.isNumber == true }
        #expect(dates.count <= 3, "\(dates.count) date folders")
        let outOfWindow = d.statistics().counters.first { $0.name == "tickwire_store_out_of_window_total" }?.value ?? 0
        #expect(outOfWindow == UInt64(total - near), "out of window: \(outOfWindow)")
    }
}
