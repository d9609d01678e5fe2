import Foundation
import Synchronization
import Testing
import TickwireClient
import TickwireCore
@testable import TickwireDaemon
import TickwireTestSupport
import TickwireZMQ
#if canImport(Glibc)
import Glibc
#endif

/// The accounting behind `[publish] memory_budget_mb`, fed by hand: the bounds, and who is cut.
@Suite struct SubscriberBudgetTests {
    @Test func aQueueHoldsAtMostWhatWasPublishedSinceItLastDrainedAndAtMostTheMark() {
        var b = SubscriberBudget(budgetMessages: 1_000, mark: 300)
        b.join(5, published: 1_000)
        #expect(b.held(published: 1_040) == 40)
        #expect(b.held(published: 5_000) == 300)
        b.observe(5, pushedBack: false, now: 2, published: 5_000)   // drained: the queue was empty then
        #expect(b.held(published: 5_010) == 10)
        b.observe(5, pushedBack: true, now: 3, published: 5_010)    // pushed back: it keeps what it may hold
        #expect(b.held(published: 6_000) == 300)
        b.leave(5)
        b.leave(99)   // never joined (its accept was not ours)
        #expect(b.subscribers == 0 && b.held(published: 7_000) == 0)
    }

    /// When the bounds pass the budget the longest-stalled subscribers are cut until they fit, never one that is
    /// keeping up; a cut one stops counting at once and leaves when libzmq reports it.
    @Test func theLongestStalledAreCutWhenTheQueuesPassTheBudget() {
        var b = SubscriberBudget(budgetMessages: 1_000, mark: 400)
        for fd in Int32(1)...5 { b.join(fd, published: 0) }
        b.observe(1, pushedBack: true, now: 10, published: 100)
        b.observe(2, pushedBack: true, now: 20, published: 200)
        b.observe(3, pushedBack: true, now: 20, published: 200)
        #expect(b.cutOverBudget(published: 200) == [], "5 x 200 is within the budget")
        b.observe(4, pushedBack: false, now: 30, published: 1_000)
        b.observe(5, pushedBack: false, now: 30, published: 1_000)
        // 1, 2, 3 may hold 400 each (the mark); 4 and 5 drained just now: 1,200 > 1,000.
        #expect(b.held(published: 1_000) == 1_200)
        #expect(b.cutOverBudget(published: 1_000) == [1])
        #expect(b.held(published: 1_000) == 800)
        #expect(b.stalled == 2 && b.subscribers == 5)
        #expect(b.cutOverBudget(published: 1_000).isEmpty, "a cut subscriber is not cut twice")
        // Much later 4 and 5 were seen draining again: only stalled ones (2, then 3) are candidates, and once
        // they are gone the budget is passed by nobody that could be cut.
        b.observe(4, pushedBack: false, now: 40, published: 2_000)
        b.observe(5, pushedBack: true, now: 40, published: 2_000)
        #expect(b.held(published: 2_300) == 400 + 400 + 300 + 400)
        #expect(b.cutOverBudget(published: 2_300) == [2, 3])
        b.leave(1)
        #expect(b.subscribers == 4)
        var c = SubscriberBudget(budgetMessages: 10, mark: 100)
        c.join(7, published: 0)
        c.observe(7, pushedBack: false, now: 1, published: 0)
        #expect(c.held(published: 50) == 50)
        #expect(c.cutOverBudget(published: 50).isEmpty)
    }

    /// A subscriber the daemon cannot cut (not TCP) counts against the budget but is never a candidate.
    @Test func onlyCuttableSubscribersAreCandidates() {
        var b = SubscriberBudget(budgetMessages: 100, mark: 1_000)
        b.join(1, published: 0, cuttable: false)
        b.join(2, published: 0)
        b.observe(1, pushedBack: true, now: 1, published: 500)
        b.observe(2, pushedBack: true, now: 2, published: 500)
        #expect(b.cutOverBudget(published: 500) == [2])
        #expect(b.held(published: 500) == 500)
    }

    /// Equal stall times: the subscriber holding most goes first.
    @Test func amongEquallyStalledTheLargestQueueGoesFirst() {
        var b = SubscriberBudget(budgetMessages: 500, mark: 1_000)
        b.join(1, published: 0)
        b.join(2, published: 600)
        b.observe(1, pushedBack: true, now: 5, published: 900)
        b.observe(2, pushedBack: true, now: 5, published: 900)
        #expect(b.cutOverBudget(published: 900) == [1])
    }
}

@Suite struct PublishBudgetConfigTests {
    @Test func theBudgetIsAPublishKeyInMiBAndZeroTurnsItOff() throws {
        #expect(DaemonConfig().publishMemoryBudgetMB == 512)
        #expect(try DaemonConfig.parse(toml: "[publish]\nmemory_budget_mb = 64").publishMemoryBudgetMB == 64)
        #expect(try DaemonConfig.parse(toml: "[publish]\nmemory_budget_mb = 0").publishMemoryBudgetMB == 0)
        for bad in ["[publish]\nmemory_budget_mb = -1", "[publish]\nmemory_budget_mb = \"lots\"",
                    "[publish]\nhigh_water_mark = 4294967296"] {
            #expect { try DaemonConfig.parse(toml: bad) } throws: { "\($0)".contains("publish.") }
        }
    }
}

/// A real daemon with a small memory budget, 50 remote subscribers that take everything and never read, a
/// healthy one, and one that stalls and resumes.
@Suite(.serialized) struct PublishBudgetDaemonTests {
    static let budgetMiB = 8
    /// One stalled subscriber may hold most of the budget (32,768 messages); 50 could hold 30 times it (without
    /// the budget: 120 MiB or so, measured).
    static let mark = 20_000

    @Test(.timeLimit(.minutes(5))) func stalledSubscribersStayWithinTheBudgetAndTheHealthyOneLosesNothing() throws {
        let dir = temporaryDirectory("budget")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/t.toml"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "[publish]\nhigh_water_mark = \(Self.mark)\nmemory_budget_mb = \(Self.budgetMiB)\n".write(toFile: file, atomically: true, encoding: .utf8)
        let daemon = try DaemonProcess(["--config", file, "--rate", "10000"])
        let pid = daemon.child.pid

        let context = ZMQContext()
        var stalled: [ZMQSocket] = []
        defer { for s in stalled { s.close() } }   // before the daemon stops
        func stall(_ n: Int) throws {
            for _ in 0..<n {
                let s = try context.socket(.sub)
                try s.setReceiveHighWaterMark(10)
                try s.setReceiveBufferBytes(4096)
                try s.subscribe("")
                try s.connect(daemon.pub)
                stalled.append(s)
            }
        }

        // The healthy subscriber is the real client: `tickwire tail`, which reports any loss as `gap:` on stderr.
        // 50,000 events take it about 5 s at the daemon's 10,000 a second: it runs through both waves.
        let healthyCount = 50_000
        let healthy = try ChildProcess(tickwireBinary, ["tail", ">", "--count", "\(healthyCount)", "--format", "jsonl",
                                                        "--connect", daemon.pub, "--timeout", "10"])
        defer { healthy.signal(SIGKILL); _ = healthy.wait(seconds: 5) }
        let resumer = try context.socket(.sub)
        defer { resumer.close() }
        try resumer.setReceiveHighWaterMark(10)
        try resumer.setReceiveBufferBytes(4096)
        try resumer.subscribe("MD.")
        try resumer.connect(daemon.pub)
        try resumer.setReceiveTimeout(milliseconds: 5000)
        let first = try #require(try resumer.receiveMultipart(), "the resuming subscriber receives before it stalls")
        let firstSeq = seq(first)
        sleep(1)
        let before = try rssMiB(pid)

        // Ten stall, then forty more: their queues fill to the mark until together they could pass the budget,
        // and from then on the longest stalled are cut.
        var peak = before
        func watch(seconds: Double) throws {
            let end = Date().addingTimeInterval(seconds)
            while Date() < end {
                peak = max(peak, try rssMiB(pid))
                usleep(200_000)
            }
        }
        try stall(10)
        try watch(seconds: 2)
        try stall(40)
        try watch(seconds: 6)

        let stats = StatsTable.parse(try DaemonProcess.tickwire(["stats", "--metrics", daemon.metrics, "--raw"]).stdout)
        func metric(_ name: String) -> Double { stats.first { $0.name == name }?.value ?? -1 }
        let budgetBytes = Double(Self.budgetMiB << 20)
        // Per connection libzmq also keeps fixed buffers (the engine's 8 KB batches, a 16 KB queue chunk each
        // way); allow 256 KB each, and 16 MiB for the allocator's slack.
        let bound = Double(Self.budgetMiB) + 52 * 0.25 + 16
        print("publish budget: RSS \(before) MiB before, peak \(peak) MiB with 50 stalled; bound +\(bound) MiB;",
              "mark \(metric("tickwire_publish_high_water_mark")), subscribers \(metric("tickwire_publish_subscribers")),",
              "stalled \(metric("tickwire_publish_stalled_subscribers")), cut \(metric("tickwire_publish_subscribers_cut_total")),",
              "queued at most \(metric("tickwire_publish_queued_bound_bytes") / 1_048_576) MiB;",
              daemon.child.stderr.split(separator: "\n").filter { $0.contains("cut stalled") }.prefix(3).joined(separator: "\n"))
        #expect(peak - before <= bound, "the daemon's RSS grew \(peak - before) MiB with 50 stalled subscribers")
        #expect(metric("tickwire_publish_memory_budget_bytes") == budgetBytes)
        #expect(metric("tickwire_publish_high_water_mark") == Double(Self.mark))
        #expect(metric("tickwire_publish_queued_bound_bytes") <= budgetBytes)
        // A cut subscriber that is not reading does not notice until it reads again: it stays away meanwhile.
        let subscribers = metric("tickwire_publish_subscribers"), cut = metric("tickwire_publish_subscribers_cut_total")
        #expect(cut >= 40, "stalled subscribers beyond the budget are cut")
        #expect(subscribers + cut >= 51)
        #expect(metric("tickwire_publish_stalled_subscribers") >= 1, "a stalled subscriber within the budget is kept")

        // The stalled one resumes: what it missed shows as a jump in the MD stream's gapless `seq`.
        var lastSeq = firstSeq, jumped = false
        for _ in 0..<1_000_000 {
            guard let m = try resumer.receiveMultipart() else { break }
            let s = seq(m)
            if s > lastSeq + 1 { jumped = true; break }
            lastSeq = s
        }
        #expect(jumped, "the resumed subscriber sees the messages it lost as a gap")

        #expect(healthy.wait(seconds: 20) == 0, "the healthy subscriber: \(healthy.stderr)")
        #expect(healthy.stdout.split(separator: "\n").count == healthyCount)
        #expect(!healthy.stderr.contains("gap"), "the healthy subscriber lost messages: \(healthy.stderr.prefix(500))")
    }

    /// The MD stream's `seq` (payload bytes 8..<16, little-endian; docs/PROTOCOL.md).
    func seq(_ frames: [[UInt8]]) -> UInt64 {
        guard frames.count == 2, frames[1].count >= 16 else { return 0 }
        return (0..<8).reduce(UInt64(0)) { $0 | UInt64(frames[1][8 + $1]) << (8 * $1) }
    }

    func rssMiB(_ pid: pid_t) throws -> Double {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") })
        let kb = try #require(Double(line.split(separator: " ", omittingEmptySubsequences: true)[1]))
        return kb / 1024
    }
}
