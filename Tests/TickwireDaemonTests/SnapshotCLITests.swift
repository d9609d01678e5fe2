import Foundation
import Testing
import TickwireTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Snapshot recovery through the command line, as an operator runs it: `tickwire play --snapshot` as the
/// exchange (losing a fifth of its packets, no re-request server), a handler joining mid-session with
/// `moldudp64:…?snapshot=` — `tickwire decode`, which builds the source from the spec exactly as `tickwire run`
/// does — and, as the oracle, `tickwire decode` of the whole file.
@Suite(.serialized) struct SnapshotCLITests {
    static let itch = packageRoot + "/Tests/Fixtures/nasdaq_itch50_20191230_0930_1000msgs.itch50"

    /// The JSON objects of a JSONL output.
    static func objects(_ jsonl: String) -> [[String: Any]] {
        jsonl.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// The last QUOTE per subject, as text, leaving out empty tops (none published is the same as empty).
    static func lastQuotes(_ objects: [[String: Any]]) -> [String: String] {
        var out: [String: String] = [:]
        for o in objects where o["kind"] as? String == "QUOTE" {
            out[o["subject"] as! String] = ["bid", "bid_size", "ask", "ask_size"].map { "\(o[$0]!)" }.joined(separator: " ")
        }
        return out.filter { $0.value != "0 0 0 0" }
    }

    @Test(.timeLimit(.minutes(5))) func aHandlerJoiningMidSessionWithLossEndsWithTheBooksOfTheWholeFile() throws {
        let line = freePort(), snapshot = freePort()
        let player = try ChildProcess(tickwireBinary, ["play", Self.itch, "--to", "127.0.0.1:\(line)", "--snapshot", "127.0.0.1:\(snapshot)",
                                                       "--rate", "1000", "--drop-a", "20", "--linger", "4"])
        defer { player.signal(SIGTERM); _ = player.wait(seconds: 10) }
        usleep(300_000)   // the exchange is 0.3 s into a 1 s session
        let spec = "moldudp64:127.0.0.1:\(line)?snapshot=127.0.0.1:\(snapshot)&gap_timeout_ms=50"
        let handler = try DaemonProcess.tickwire(["decode", "--source", spec, "--date", "2019-12-30", "--format", "jsonl", "--stats",
                                                  "--idle-timeout-ms", "3000"], seconds: 60)
        #expect(handler.status == 0, "\(handler.stderr.suffix(2000))")
        let oracle = try DaemonProcess.tickwire(["decode", "--source", "itch:\(Self.itch)", "--format", "jsonl"])
        #expect(oracle.status == 0)
        let mine = Self.objects(handler.stdout)
        #expect(Self.lastQuotes(mine) == Self.lastQuotes(Self.objects(oracle.stdout)))
        #expect(!Self.lastQuotes(mine).isEmpty)
        // The losses made books stale, and every one was cleared by a rebuild.
        let book = mine.filter { $0["kind"] as? String == "STATUS" && $0["category"] as? String == "book" }
        #expect(book.contains { $0["state"] as? String == "S" && $0["reason"] as? String == "GAP" })
        var open: Set<String> = []
        for o in book { if o["state"] as? String == "S" { open.insert(o["subject"] as! String) } else { open.remove(o["subject"] as! String) } }
        #expect(open.isEmpty)
        #expect(handler.stderr.contains("snapshots"), "\(handler.stderr.suffix(2000))")
        // The exchange served the snapshots and says so.
        _ = player.wait(seconds: 15)
        #expect(player.stderr.contains("snapshot.served"), "\(player.stderr.suffix(1000))")
    }

    @Test(.timeLimit(.minutes(5))) func playRefusesBadSnapshotFlagsAndRunRefusesBadSpecKeys() throws {
        let bad = try DaemonProcess.tickwire(["play", Self.itch, "--to", "127.0.0.1:1", "--snapshot", "127.0.0.1"])
        #expect(bad.status == 64 && bad.stderr.contains("--snapshot"), "\(bad.stderr)")
        let caps = try DaemonProcess.tickwire(["play", Self.itch, "--to", "127.0.0.1:1", "--max-request", "0"])
        #expect(caps.status == 64 && caps.stderr.contains("--max-request"), "\(caps.stderr)")
        let spec = try DaemonProcess.tickwire(["run", "--source", "moldudp64:127.0.0.1:1?snapshot=127.0.0.1:2&max_jump=0"])
        #expect(spec.status != 0 && spec.stderr.contains("max_jump=0"), "\(spec.stderr)")
    }
}
