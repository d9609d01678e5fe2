import Foundation
import Testing
import TickwireCore
import TickwireJournal
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
