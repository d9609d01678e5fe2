import Foundation
import Testing
import TickwireCore
import TickwireJournal
import TickwireTestSupport
import TickwireZMQ
@testable import TickwireDaemon

/// Mounts a tmpfs of `size` on a fresh directory for `body`, unmounted afterwards (needs root, as CI and the
/// developers' machines run; a failed mount is recorded as an issue, not skipped).
func withTmpfs(size: String, _ body: (TradeTempDir) throws -> Void) throws {
    let dir = TradeTempDir()
    guard mount("tmpfs", dir.path, "tmpfs", 0, "size=\(size)") == 0 else {
        Issue.record("mounting a tmpfs needs root: errno \(errno)")
        return
    }
    defer { umount(dir.path) }
    try body(dir)
}

/// Fills the file system holding `path` up to `leave` bytes free with a file at `path`.
func fill(_ path: String, leavingFree leave: Int) throws {
    var st = statvfs()
    guard statvfs((path as NSString).deletingLastPathComponent, &st) == 0 else { throw POSIXError(.EIO) }
    let free = Int(st.f_bavail) * Int(st.f_frsize)
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    defer { close(fd) }
    let chunk = [UInt8](repeating: 0x5a, count: 64 << 10)
    var left = max(0, free - leave)
    while left > 0 {
        let n = chunk.withUnsafeBytes { write(fd, $0.baseAddress!, min(left, $0.count)) }
        if n <= 0 { break }
        left -= n
    }
}

@Suite(.serialized) struct TradeFaultTests {
    /// A full disk refuses trades with a clear reason and acknowledges none that is not on disk; once space
    /// returns, trading resumes by itself; afterwards every acknowledged trade is in the journal exactly once.
    @Test func tradingResumesByItselfWhenTheDiskHasRoomAgain() throws {
        try withTmpfs(size: "8m") { dir in
            let s = try RunningTradeService(dir: dir)
            defer { s.service.stop() }
            let ctx = ZMQContext()
            let client = try s.client(ctx)
            defer { client.close() }
            var acked: [String: UInt64] = [:]
            var refusals: [String] = []
            var n = 0
            func submitBatch() throws -> (acked: Int, refused: Int) {
                let batch = (0..<64).map { _ -> TradeRequest in n += 1; return tradeOrder("F\(n)") }
                try client.send(batch: batch)
                var a = 0, r = 0
                for _ in batch {
                    guard let reply = try client.receive(timeoutMs: 10_000) else { Issue.record("no reply"); return (a, r) }
                    switch reply {
                    case .ack(let id, let seq, let dup):
                        #expect(!dup && acked[id] == nil)
                        acked[id] = seq; a += 1
                    case .reject(_, let why):
                        #expect(why.code == .journalUnavailable)
                        refusals.append(why.text); r += 1
                    }
                }
                return (a, r)
            }
            _ = try submitBatch()
            let filler = dir.path + "/filler"
            try fill(filler, leavingFree: 96 << 10)
            var refused = 0
            for _ in 0..<200 where refused == 0 { refused += try submitBatch().refused }
            #expect(refused > 0)
            #expect(refusals.first?.contains("disk full") == true)
            // Still full: still refused, nothing acknowledged.
            let before = acked.count
            #expect(try submitBatch() == (0, 64))
            #expect(acked.count == before)

            try FileManager.default.removeItem(atPath: filler)
            let deadline = Date().addingTimeInterval(15)
            var resumed = false
            while !resumed && Date() < deadline {
                resumed = try submitBatch().acked == 64
                if !resumed { usleep(200_000) }
            }
            #expect(resumed)
            for _ in 0..<5 { #expect(try submitBatch() == (64, 0)) }
            #expect(s.service.counters.journalFailures == 1 && s.service.counters.journalResumes == 1)
            #expect(s.logs.all.contains { $0.contains("resumed at seq") })
            // A retry of an id acknowledged before the disk filled answers with its original sequence.
            let (id, seq) = acked.min { $0.value < $1.value }!
            #expect(try client.submit(tradeOrder(id)) == .ack(clientOrderID: id, seq: seq, duplicate: true))
            s.service.stop()

            var journaled: [String: UInt64] = [:]
            try JournalAudit.forEach(directory: dir.path + "/journal") { r in
                let t = TradeWire.decodeRecord(r.payload)!
                #expect(journaled[t.clientOrderID] == nil, "\(t.clientOrderID) twice")
                journaled[t.clientOrderID] = r.seq
            }
            // Every acknowledged trade exactly once, at the sequence it was acknowledged with; nothing else.
            #expect(journaled == acked)
        }
    }
}

/// A state built from journaled trades (here: how many), checkpointed by the service.
final class CountingState: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    private(set) var rebuilds: [(snapshot: Int?, replayed: Int)] = []
    func add() { lock.withLock { n += 1 } }
    var count: Int { lock.withLock { n } }
    var hooks: JournalState {
        JournalState(name: "count", take: { [self] in withUnsafeBytes(of: UInt64(count)) { Array($0) } }, rebuild: { [self] snapshot, trades in
            let base = snapshot.map { s in s.withUnsafeBytes { Int($0.loadUnaligned(as: UInt64.self)) } }
            lock.withLock {
                n = (base ?? 0) + trades.count
                rebuilds.append((base, trades.count))
            }
        })
    }
}

@Suite(.serialized) struct TradeCheckpointTests {
    /// A start replays only the trades after the last checkpoint: the state comes back from the checkpoint plus
    /// those, equal to what all of them built; retries of ids from before the checkpoint still find their sequence.
    @Test func aStartReplaysOnlyWhatFollowsTheCheckpoint() throws {
        let dir = TradeTempDir()
        let state = CountingState()
        var acked: [String: UInt64] = [:]
        do {
            let s = try RunningTradeService(dir: dir, check: { _ in state.add(); return nil }) {
                $0.state = state.hooks
                $0.checkpointIntervalNanos = 100_000_000
                $0.journal.segmentBytes = 64 << 10   // several segments, so the start has some to leave behind
            }
            let ctx = ZMQContext()
            let client = try s.client(ctx)
            for i in 0..<1500 {
                if case .ack(let id, let seq, _) = try client.submit(tradeOrder("C\(i)")) { acked[id] = seq }
            }
            client.close()
            s.service.stop()
        }
        #expect(acked.count == 1500 && state.count == 1500)
        let restarted = CountingState()
        let s = try RunningTradeService(dir: dir, check: { _ in restarted.add(); return nil }) {
            $0.state = restarted.hooks
            $0.journal.segmentBytes = 64 << 10
        }
        defer { s.service.stop() }
        // A clean stop checkpointed everything: nothing to replay, the count from the checkpoint alone.
        #expect(restarted.rebuilds.count == 1 && restarted.rebuilds[0].snapshot == 1500 && restarted.rebuilds[0].replayed == 0)
        #expect(restarted.count == 1500)
        #expect(s.logs.all.contains { $0.contains("replayed from 1501") })
        let ctx = ZMQContext()
        let client = try s.client(ctx)
        defer { client.close() }
        for id in ["C0", "C700", "C1499"] {
            #expect(try client.submit(tradeOrder(id)) == .ack(clientOrderID: id, seq: acked[id]!, duplicate: true))
        }
        #expect(try client.submit(tradeOrder("C1500")) == .ack(clientOrderID: "C1500", seq: 1501, duplicate: false))
    }

    /// A checkpoint the journal no longer backs (the operator cut the journal back past it) is not trusted: the
    /// whole journal is replayed instead.
    @Test func aCheckpointAheadOfTheJournalMeansAFullReplay() throws {
        let dir = TradeTempDir()
        let state = CountingState()
        do {
            let s = try RunningTradeService(dir: dir, check: { _ in state.add(); return nil }) { $0.state = state.hooks }
            let ctx = ZMQContext()
            let client = try s.client(ctx)
            for i in 0..<50 { _ = try client.submit(tradeOrder("K\(i)")) }
            client.close()
            s.service.stop()
        }
        // Damage record 40 and let the operator cut there: records 40...50 leave the journal.
        var records: [JournalRecord] = []
        try JournalAudit.forEach(directory: dir.path + "/journal") { records.append($0) }
        let victim = records[39]
        let path = dir.path + "/journal/" + victim.segment
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[Int(victim.offset) + 70] ^= 0x10
        try bytes.write(to: URL(fileURLWithPath: path))
        var options = JournalOptions()
        options.onCorruption = .truncate
        let repaired = try Journal(directory: dir.path + "/journal", options: options)
        #expect(repaired.recovery.lostAcknowledged == 40...50)
        repaired.close()

        let restarted = CountingState()
        let s = try RunningTradeService(dir: dir, check: { _ in restarted.add(); return nil }) { $0.state = restarted.hooks }
        defer { s.service.stop() }
        #expect(restarted.rebuilds.last?.snapshot == nil && restarted.rebuilds.last?.replayed == 39)
        #expect(s.logs.all.contains { $0.contains("replaying the whole journal") })
        let ctx = ZMQContext()
        let client = try s.client(ctx)
        defer { client.close() }
        // An id lost with the cut is journaled anew; one before it is still a retry.
        #expect(try client.submit(tradeOrder("K45")) == .ack(clientOrderID: "K45", seq: 40, duplicate: false))
        #expect(try client.submit(tradeOrder("K10")) == .ack(clientOrderID: "K10", seq: 11, duplicate: true))
    }
}

@Suite(.serialized) struct TradeHostileClientTests {
    /// An admitted trader's oversized frame cuts that connection (ZMQ_MAXMSGSIZE): nothing is buffered or
    /// journaled, and every other client is served.
    @Test func anOversizedFrameCutsItsSenderOnly() throws {
        let s = try RunningTradeService()
        defer { s.service.stop() }
        let ctx = ZMQContext()
        let server = try CurveKeyPair.read(from: KeyStore.serverPath(s.dir.path))
        let me = try KeyStore.traderPair(data: s.dir.path, name: nil)
        let raw = try ctx.socket(.dealer)
        defer { raw.close() }
        try raw.setCurveClient(serverKey: server.publicKey, publicKey: me.publicKey, secretKey: me.secretKey!)
        try raw.setReceiveTimeout(milliseconds: 1_000)
        try raw.connect(s.service.boundEndpoint)
        try raw.send([UInt8](repeating: 0x41, count: 8 << 20))
        #expect(try raw.receiveMultipart() == nil, "an 8 MiB frame was answered")
        let client = try s.client(ctx)
        defer { client.close() }
        #expect(try client.submit(tradeOrder("after")) == .ack(clientOrderID: "after", seq: 1, duplicate: false))
        #expect(s.service.counters.malformed == 0 && s.service.counters.accepted == 1)
    }

    /// Strangers hammering the port are all refused, but the log gets a bounded number of lines a window (the
    /// next line after it says how many were left out). Fifteen refusals fill one window and five more are left
    /// out; a run slower than a window (seen under the thread sanitizer: 13.6 s) may log a second window's worth.
    @Test func refusedKeysAreLoggedAtABoundedRate() throws {
        let s = try RunningTradeService()
        defer { s.service.stop() }
        let ctx = ZMQContext()
        let started = Nanos.now().rawValue
        for i in 0..<15 {
            let stranger = try TradeClient(context: ctx, endpoint: s.service.boundEndpoint, serverPublicKey: s.service.serverPublicKey,
                                           keys: try CurveKeyPair.generate(name: "mallory\(i)"))
            #expect(throws: TradeServiceError.self) { _ = try stranger.submit(tradeOrder("M\(i)"), timeoutMs: 200) }
            stranger.close()
        }
        let windows = Int((Nanos.now().rawValue - started) / ZAPHandler.logWindowNanos) + 1
        let lines = s.logs.all.filter { $0.contains("refused CURVE key") }
        #expect(lines.count >= ZAPHandler.logBurst && lines.count <= min(15, ZAPHandler.logBurst * windows),
                "\(lines.count) lines in \(windows) window(s)")
        #expect(s.service.counters.accepted == 0)
    }

    /// A client whose request no connection takes (here both daemons of a pair down, so the DEALER has none; a key
    /// refused at the handshake does the same) gets "no reply" within the send limit, never a send held for ever.
    @Test func aRequestNoConnectionTakesEndsAsNoReply() throws {
        let ctx = ZMQContext()
        let server = try CurveKeyPair.generate(name: "server")
        let client = try TradeClient(context: ctx, endpoint: "tcp://127.0.0.1:\(freePort()),tcp://127.0.0.1:\(freePort())",
                                     serverPublicKey: server.publicKey, keys: try CurveKeyPair.generate(name: "trader"))
        defer { client.close() }
        do {
            _ = try client.submit(tradeOrder("nobody"), timeoutMs: 1_000)
            Issue.record("a request with no connection was answered")
        } catch TradeServiceError.noReply(let id, _) {
            #expect(id == "nobody")
        }
    }
}
