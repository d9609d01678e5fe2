import Foundation
import TickwireTestSupport
import Testing
import TickwireCore
import TickwireZMQ
#if canImport(Glibc)
import Glibc
#endif

/// Alerts from a real daemon: a scripted market fed over ZeroMQ (the `zmq:` relay source) jumps in price and
/// crosses; the daemon's default rules publish ALERT.PRICE_JUMP and ALERT.CROSSED for a subscriber to see.
@Suite(.serialized) struct AlertDaemonTests {
    @Test func aScriptedPriceJumpAndACrossedMarketRaiseAlerts() throws {
        let ctx = ZMQContext()
        let feed = try ctx.socket(.pub)
        try feed.bind("tcp://127.0.0.1:*")
        let daemon = try DaemonProcess(["--source", "zmq:\(feed.lastEndpoint)"])
        let jump = try ChildProcess(tickwireBinary, ["tail", "ALERT.PRICE_JUMP.>", "--count", "1", "--connect", daemon.pub, "--timeout", "20"])
        let crossed = try ChildProcess(tickwireBinary, ["tail", "ALERT.CROSSED.>", "--count", "1", "--connect", daemon.pub, "--timeout", "20"])
        func send(_ subject: String, _ e: Event) throws { try feed.sendMultipart([Array(subject.utf8), WireCodec.encode(e, subjectSeq: 1)]) }
        // Repeat the script until both subscribers have their alert (the first rounds may precede the joins).
        let deadline = Date().addingTimeInterval(20)
        var price: Int64 = 100
        while (jump.isRunning || crossed.isRunning) && Date() < deadline {
            let now = Nanos.now()
            price = price == 100 ? 110 : 100   // ±10% against the default 100 bp rule
            try send("MD.XTEST.JUMP.TRADE", .trade(0, price: Price(e8: price * FixedPoint.scale), size: Quantity(e8: FixedPoint.scale),
                                                   side: .buy, tradeID: 1, eventTime: now, knownTime: now))
            try send("MD.XTEST.CROSS.QUOTE", .quote(0, bid: Price(e8: 101 * FixedPoint.scale), bidSize: Quantity(e8: FixedPoint.scale),
                                                    ask: Price(e8: 100 * FixedPoint.scale), askSize: Quantity(e8: FixedPoint.scale),
                                                    eventTime: now, knownTime: now))
            try send("MD.XTEST.CROSS.QUOTE", .quote(0, bid: Price(e8: 99 * FixedPoint.scale), bidSize: Quantity(e8: FixedPoint.scale),
                                                    ask: Price(e8: 100 * FixedPoint.scale), askSize: Quantity(e8: FixedPoint.scale),
                                                    eventTime: now, knownTime: now))
            usleep(100_000)
        }
        #expect(jump.wait(seconds: 5) == 0, "\(jump.stderr)")
        #expect(crossed.wait(seconds: 5) == 0, "\(crossed.stderr)")
        #expect(jump.stdout.contains("\"subject\":\"ALERT.PRICE_JUMP.JUMP\""), "\(jump.stdout)")
        #expect(crossed.stdout.contains("\"subject\":\"ALERT.CROSSED.CROSS\""), "\(crossed.stdout)")
        #expect(crossed.stdout.contains("\"kind\":\"ALERT\""))
    }
}
