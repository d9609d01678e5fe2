import Foundation
import Testing
import TickwireCore
import TickwireRing
import TickwireZMQ
@testable import TickwireDaemon

/// An acknowledgement never waits for the ring: with a blocking consumer stuck a full ring behind (a store writer
/// on a stalled disk, say), the feed waits but trades are still acknowledged at once, and their TRADE events
/// reach the ring once the consumer moves again.
@Suite(.serialized, .timeLimit(.minutes(5))) struct TradeAckRingTests {
    @Test func tradesAreAcknowledgedWhileTheRingIsFull() throws {
        let daemon = inProcessDaemon("ack-ring") { c in
            c.ringCapacity = 1_024
            c.simRate = 20_000
            c.metricsMonitor = false
            c.riskDefault = ["price_collar_bps": "none"]
        }
        try daemon.start()
        defer { daemon.shutdown() }
        let from = daemon.ring.publishedSequence
        let stuck = daemon.ring.addConsumer(name: "stuck", policy: .blocking, wait: .park)
        // The feed fills the ring behind the stuck consumer and then waits for it. The source claims a batch at a
        // time and waits for room for the whole batch (a loaded machine makes batches larger), so "full" is the
        // ring stopping short of its capacity by less than one batch: well past half of it.
        let deadline = Date().addingTimeInterval(20)
        while daemon.ring.publishedSequence < from + 512 && Date() < deadline { usleep(10_000) }
        #expect(daemon.ring.publishedSequence >= from + 512, "the ring never filled")
        usleep(200_000)
        let full = daemon.ring.publishedSequence
        usleep(200_000)
        #expect(daemon.ring.publishedSequence == full, "the feed did not wait for the stuck consumer")
        let ctx = ZMQContext()
        let client = try TradeClient.forDataDirectory(daemon.config.dataDirectory, context: ctx,
                                                      endpoint: try #require(daemon.tradeServiceEndpoint))
        defer { client.close() }
        for i in 0..<20 {
            let reply = try client.submit(tradeOrder("ring\(i)"), timeoutMs: 5_000)
            guard case .ack = reply else { Issue.record("trade \(i) not acknowledged while the ring was full: \(reply)"); return }
        }
        // The consumer moves again: the trades' events follow the feed into the ring.
        let before = daemon.ring.publishedSequence
        daemon.ring.removeConsumer(stuck)
        let later = Date().addingTimeInterval(10)
        while daemon.ring.publishedSequence < before + 20 && Date() < later { usleep(10_000) }
        #expect(daemon.ring.publishedSequence >= before + 20)
    }
}
