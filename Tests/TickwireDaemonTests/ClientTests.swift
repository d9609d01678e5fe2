import Foundation
import TickwireTestSupport
import Testing
import TickwireClient
import TickwireCore
import TickwireZMQ

/// A raw ZeroMQ publisher on a free loopback port, for tests that send exactly the bytes they want.
func publisher() throws -> (ZMQContext, ZMQSocket, String) {
    let ctx = ZMQContext()
    let pub = try ctx.socket(.pub)
    try pub.bind("tcp://127.0.0.1:*")
    return (ctx, pub, pub.lastEndpoint)
}

/// A QUOTE with sequence `seq` and fixed prices and times.
func quote(_ seq: UInt64) -> Event {
    var e = Event.quote(0, bid: Price(e8: 100), bidSize: Quantity(e8: 1), ask: Price(e8: 200), askSize: Quantity(e8: 1),
                        eventTime: Nanos(1), knownTime: Nanos(2))
    e.seq = seq
    return e
}

/// The client library against a raw ZeroMQ publisher that sends exactly the bytes a test wants.
@Suite struct SubscriberTests {

    /// Sends a probe until the subscription has reached the publisher, then returns.
    func handshake(_ pub: ZMQSocket, _ sub: Subscriber) throws {
        for _ in 0..<100 {
            try pub.sendMultipart([Array("MD.X.PROBE.QUOTE".utf8), WireCodec.encode(quote(0), subjectSeq: 1)])
            if try sub.next(timeoutMs: 20) != nil { return }
        }
        Issue.record("subscription never arrived")
    }

    @Test func detectsGapsPerSubjectAndSkipsMalformedPayloads() throws {
        let (_, pub, endpoint) = try publisher()
        let sub = try Subscriber(endpoint: endpoint, patterns: [try SubjectPattern("MD.X.*.QUOTE")])
        try handshake(pub, sub)
        let a = Array("MD.X.A.QUOTE".utf8), b = Array("MD.X.B.QUOTE".utf8)
        try pub.sendMultipart([a, WireCodec.encode(quote(10), subjectSeq: 1)])
        try pub.sendMultipart([b, WireCodec.encode(quote(11), subjectSeq: 1)])
        try pub.sendMultipart([a, [1, 2, 3]])                                   // short
        var wrong = WireCodec.encode(quote(12), subjectSeq: 2); wrong[0] = 7    // another version
        try pub.sendMultipart([a, wrong])
        try pub.sendMultipart([a])                                              // one frame
        try pub.sendMultipart([Array("MD.X.A.TRADE".utf8), WireCodec.encode(quote(13), subjectSeq: 1)])   // filtered by pattern
        try pub.sendMultipart([a, WireCodec.encode(quote(14), subjectSeq: 5)])  // 2...4 lost
        try pub.sendMultipart([b, WireCodec.encode(quote(15), subjectSeq: 2)])
        var got: [Delivery] = []
        while got.count < 5, let d = try sub.next(timeoutMs: 2000) { got.append(d) }
        #expect(got.count == 5)
        guard got.count == 5 else { return }
        #expect(got[0] == .event(WireEvent(subject: "MD.X.A.QUOTE", subjectSeq: 1, event: quote(10))))
        #expect(got[1] == .event(WireEvent(subject: "MD.X.B.QUOTE", subjectSeq: 1, event: quote(11))))
        #expect(got[2] == .gap(subject: "MD.X.A.QUOTE", first: 2, last: 4))
        #expect(got[3] == .event(WireEvent(subject: "MD.X.A.QUOTE", subjectSeq: 5, event: quote(14))))
        #expect(got[4] == .event(WireEvent(subject: "MD.X.B.QUOTE", subjectSeq: 2, event: quote(15))))
        #expect(sub.malformed == 3)
        #expect(sub.gaps == 1 && sub.lost == 3)
        #expect(sub.filtered >= 1)
    }

    @Test func refusesNoPatterns() {
        #expect(throws: SubscribeError.self) { try Subscriber(endpoint: "tcp://127.0.0.1:1", patterns: []) }
    }
}

@Suite struct TickerRendererTests {
    func trade(_ subject: String, _ price: Int64, size: Int64 = 100) -> Delivery {
        .event(WireEvent(subject: subject, subjectSeq: 1,
                         event: .trade(0, price: Price(e8: price * FixedPoint.scale), size: Quantity(e8: size * FixedPoint.scale),
                                       side: .buy, tradeID: 1, eventTime: Nanos(1), knownTime: Nanos(1))))
    }

    @Test func rowsShowLastChangeQuoteAndVolume() {
        var m = TickerModel(endpoint: "tcp://x")
        let t0 = Nanos(1_000_000_000_000)
        m.apply(trade("MD.XNAS.AAPL.TRADE", 100), now: t0)
        m.apply(trade("MD.XNAS.AAPL.TRADE", 102, size: 50), now: t0)
        m.apply(.event(WireEvent(subject: "MD.XNAS.AAPL.QUOTE", subjectSeq: 1,
                                 event: .quote(0, bid: Price(e8: 101 * FixedPoint.scale), bidSize: Quantity(e8: 300 * FixedPoint.scale),
                                               ask: Price(e8: 103 * FixedPoint.scale), askSize: Quantity(e8: 200 * FixedPoint.scale),
                                               eventTime: Nanos(1), knownTime: Nanos(1)))), now: t0)
        m.apply(trade("MD.XNYS.MSFT.TRADE", 50), now: t0)
        let lines = TickerRenderer.plainLines(m)
        #expect(lines.count == 3)
        #expect(lines[1].hasPrefix("AAPL     XNAS"))
        #expect(lines[1].contains("102.00") && lines[1].contains("+2.00") && lines[1].contains("300 101.00") && lines[1].contains("103.00 200") && lines[1].contains("150"))
        #expect(lines[2].hasPrefix("MSFT     XNYS"))
    }

    @Test func framesFlashOnTicksAndFitTheScreen() {
        var m = TickerModel(endpoint: "tcp://x")
        let t0 = Nanos(1_000_000_000_000)
        m.apply(trade("MD.XNAS.AAPL.TRADE", 100), now: t0)
        m.apply(trade("MD.XNAS.AAPL.TRADE", 101), now: t0)   // an up-tick: green
        let flashing = TickerRenderer.frame(m, width: 100, height: 10, now: t0)
        #expect(flashing.hasPrefix("\u{1B}[H"))
        #expect(flashing.contains("\u{1B}[30;42m     101.00 \u{1B}[0m"))
        let later = TickerRenderer.frame(m, width: 100, height: 10, now: Nanos(t0.rawValue + 1_000_000_000))
        #expect(!later.contains("\u{1B}[30;42m"))
        #expect(later.contains("\u{1B}[32m    +1.00 \u{1B}[0m"))
        m.apply(trade("MD.XNAS.AAPL.TRADE", 99), now: t0)    // a down-tick: red
        #expect(TickerRenderer.frame(m, width: 100, height: 10, now: t0).contains("\u{1B}[97;41m"))
        // Every line is cut to the width; rows beyond the height are summarized, not scrolled.
        for i in 0..<30 { m.apply(trade("MD.XNAS.S\(i).TRADE", 10), now: t0) }
        let small = TickerRenderer.frame(m, width: 40, height: 10, now: t0, color: false)
        #expect(small.contains("more rows"))
        let visible = small.replacingOccurrences(of: "\u{1B}[K", with: "").split(separator: "\r\n")
        for line in visible.dropLast() { #expect(line.replacingOccurrences(of: "\u{1B}[H", with: "").count <= 40) }
        #expect(TickerRenderer.frame(m, width: 40, height: 10, now: t0) == TickerRenderer.frame(m, width: 40, height: 10, now: t0))
    }
}

/// The ticker as a trader sees it: a real daemon, the ticker in a real terminal (tmux), keys sent, screen read.
@Suite(.serialized) struct TickerTerminalTests {
    func tmux(_ args: [String]) throws -> String {
        let r = try ChildProcess("/usr/bin/env", ["tmux"] + args)
        _ = r.wait(seconds: 10)
        return r.stdout
    }

    @Test func tickerUnderTmuxUpdatesAndRestoresTheTerminal() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/tmux") else {
            Issue.record("tmux is not installed (Tools/setup.sh installs it)")
            return
        }
        let daemon = try DaemonProcess(["--rate", "5000"])
        let session = "tw\(getpid())\(UInt16.random(in: 0...UInt16.max))"
        _ = try tmux(["new-session", "-d", "-s", session, "-x", "120", "-y", "40",
                      "\(tickwireBinary) ticker 'MD.>' --connect \(daemon.pub); echo TICKER-EXITED $?; sleep 30"])
        defer { _ = try? tmux(["kill-session", "-t", session]) }
        var first = ""
        for _ in 0..<50 {
            usleep(200_000)
            first = try tmux(["capture-pane", "-p", "-t", session])
            if first.contains("AAPL") && first.contains("XNYS") { break }
        }
        #expect(first.contains("SYMBOL") && first.contains("AAPL") && first.contains("XNAS") && first.contains("XNYS"), "\(first)")
        usleep(1_500_000)
        let second = try tmux(["capture-pane", "-p", "-t", session])
        #expect(second != first, "the rows should change while the feed runs")
        _ = try tmux(["send-keys", "-t", session, "q"])
        var after = ""
        for _ in 0..<25 {
            usleep(200_000)
            after = try tmux(["capture-pane", "-p", "-t", session])
            if after.contains("TICKER-EXITED") { break }
        }
        #expect(after.contains("TICKER-EXITED 0"), "\(after)")
        #expect(!after.contains("SYMBOL"), "the alternate screen should be gone: \(after)")
    }
}
