import Foundation
import Testing
import TickwireCore
@testable import TickwireStore
import TickwireTestSupport

/// `tickwire correct`, `replay --as-of`, `query versions`/`changes`, `cleanse` and `audit verify` as processes.
@Suite(.timeLimit(.minutes(5)), .enabled(if: FileManager.default.isExecutableFile(atPath: tickwireBinary)))
struct CorrectionCLITests {
    let ev = Events()

    func run(_ args: [String]) throws -> (Int32?, String, String) {
        let p = try ChildProcess(tickwireBinary, args)
        let code = p.wait(seconds: 60)
        return (code, p.stdout, p.stderr)
    }

    func data() throws -> String {
        let dir = scratchDirectory()
        try ev.write([
            ev.quote("MD.XNAS.AAPL.QUOTE", at: t(1), known: t(1), bid: 100, ask: 101),
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(2), known: t(2), price: 100, id: 7),
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(3), known: t(3), price: 180, id: 8),
        ], to: dir + "/store")
        return dir
    }

    func replay(_ dir: String, asOf: String? = nil, header: Bool = false) throws -> String {
        var args = ["replay", "--subjects", "MD.>", "--from", "\(t(0).rawValue)", "--to", "\(t(10).rawValue)", "--data", dir]
        if let asOf { args += ["--as-of", asOf] }
        if header { args.append("--header") }
        let (code, out, err) = try run(args)
        #expect(code == 0, "\(err)")
        return out
    }

    @Test func correctThenReplayAsOfBeforeAndAfter() throws {
        let dir = try data(); defer { cleanUp(dir) }
        let before = try replay(dir)
        let file = dir + "/c.jsonl"
        try """
            {"subject":"MD.XNAS.AAPL.TRADE","event_time":\(t(3).rawValue),"trade_id":8,"set":{"price":"101"},"author":"alice","reason":"bad print"}

            {"subject":"MD.XNAS.AAPL.QUOTE","event_time":"\(t(1).iso8601)","op":"delete","author":"alice","reason":"stale"}
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let (code, out, err) = try run(["correct", "--file", file, "--data", dir])
        #expect(code == 0, "\(err)")
        let lines = out.split(separator: "\n")
        #expect(lines.count == 2 && lines[0].contains("\"line\":1") && lines[1].contains("\"line\":3"))
        let k = try #require(lines.first.flatMap { l in l.split(separator: ",").first { $0.hasPrefix("\"known_time\":") } }
            .flatMap { Int64($0.dropFirst("\"known_time\":".count)) })
        // As of K − 1 ns: exactly the output from before the corrections; as of K: the corrected trade.
        #expect(try replay(dir, asOf: "\(k - 1)") == before)
        let atK = try replay(dir, asOf: "\(k)")
        #expect(atK.contains("\"price\":101,") && !atK.contains("\"price\":1.8,") && atK.contains("QUOTE"))
        let latest = try replay(dir)
        #expect(!latest.contains("QUOTE") && latest.contains("\"price\":101,"))
        // Byte-identical from one process to the next; the header records the as-of used, which repeats the run.
        #expect(try replay(dir) == latest)
        let withHeader = try replay(dir, header: true)
        let head = try #require(withHeader.split(separator: "\n").first)
        #expect(head.hasPrefix("{\"tickwire\":{\"command\":\"replay\",\"as_of\":"))
        let asOf = String(head.split(separator: ",")[1].dropFirst("\"as_of\":".count))
        #expect(withHeader.dropFirst(head.count + 1) == Substring(try replay(dir, asOf: asOf)))

        // The join records its as-of too, and repeating it as of that moment gives the same rows.
        let join = ["query", "asof-join", "--trades", "MD.*.*.TRADE", "--quotes", "MD.*.*.QUOTE", "--from", "\(t(0).rawValue)",
                    "--to", "\(t(10).rawValue)", "--format", "jsonl", "--data", dir]
        let (jc, joined, jerr) = try run(join + ["--header"])
        #expect(jc == 0, "\(jerr)")
        let jhead = try #require(joined.split(separator: "\n").first)
        #expect(jhead.hasPrefix("{\"tickwire\":{\"command\":\"query asof-join\",\"as_of\":"))
        let jAsOf = String(jhead.split(separator: ",")[1].dropFirst("\"as_of\":".count))
        #expect(try joined.dropFirst(jhead.count + 1) == Substring(run(join + ["--as-of", jAsOf]).1))

        let (vc, versions, _) = try run(["query", "versions", "--subject", "MD.XNAS.AAPL.TRADE", "--event-time", "\(t(3).rawValue)", "--data", dir])
        #expect(vc == 0)
        #expect(versions.split(separator: "\n").count == 2 && versions.contains("\"author\":\"alice\"") && versions.contains("\"reason\":\"bad print\""))
        let (cc, changes, _) = try run(["query", "changes", "--from", "\(k - 1)", "--to", "\(k)", "--data", dir])
        #expect(cc == 0 && changes.split(separator: "\n").count == 1 && changes.contains("\"before\":{\"kind\":\"TRADE\",\"price\":1.8,"))
    }

    @Test func aLineNamingNoEventIsRefusedByNumberAndNothingIsWritten() throws {
        let dir = try data(); defer { cleanUp(dir) }
        let file = dir + "/c.jsonl"
        try """
            {"subject":"MD.XNAS.AAPL.QUOTE","event_time":\(t(1).rawValue),"op":"delete","author":"a","reason":"r"}
            {"subject":"MD.XNAS.AAPL.QUOTE","event_time":\(t(1).rawValue + 1),"op":"delete","author":"a","reason":"r"}
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let (code, _, err) = try run(["correct", "--file", file, "--data", dir])
        #expect(code == 1)
        #expect(err.contains("line 2: no stored event on MD.XNAS.AAPL.QUOTE"), "\(err)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/store/2026-01-05/MD.XNAS/corrections.twc"))
        try "{\"subject\":\"MD.XNAS.AAPL.QUOTE\",\"event_time\":1,\"op\":\"delete\",\"author\":\"a\"}\n".write(toFile: file, atomically: true, encoding: .utf8)
        let (c2, _, e2) = try run(["correct", "--file", file, "--data", dir])
        #expect(c2 == 1 && e2.contains("line 1: \"reason\" (why) is required"))
    }

    @Test func auditVerifyReportsAFlippedByteInTheCorrections() throws {
        let dir = try data(); defer { cleanUp(dir) }
        let (c0, _, _) = try run(["cleanse", "--rule", "price-band", "--band", "0.05", "--subjects", "MD.XNAS.>",
                                  "--from", "\(t(0).rawValue)", "--to", "\(t(10).rawValue)", "--data", dir])
        #expect(c0 == 0)
        #expect(!(try replay(dir)).contains("\"trade_id\":8"))
        let (c1, ok, _) = try run(["audit", "verify", "--data", dir])
        #expect(c1 == 0 && ok.contains("\"corrections\":{\"ok\":true,\"logs\":1,\"records\":1"))
        let path = dir + "/store/2026-01-05/MD.XNAS/corrections.twc"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[bytes.count - 5] ^= 0x20
        try bytes.write(to: URL(fileURLWithPath: path))
        let (c2, bad, _) = try run(["audit", "verify", "--data", dir])
        #expect(c2 == 1 && bad.contains("\"ok\":false") && bad.contains("record checksum mismatch"), "\(bad)")
        let (c3, _, err) = try run(["replay", "--subjects", "MD.>", "--from", "\(t(0).rawValue)", "--to", "\(t(10).rawValue)", "--data", dir])
        #expect(c3 == 1 && err.contains("corrections.twc"))
    }

    /// `cleanse --rule fill-session --dry-run` prints `correct` lines; `correct` takes them as they are.
    @Test func aFillSessionDryRunIsACorrectionsFile() throws {
        let dir = try data(); defer { cleanUp(dir) }
        let window = ["--subjects", "MD.>", "--from", "\(t(0).rawValue)", "--to", "\(t(10).rawValue)", "--data", dir]
        let (c0, lines, e0) = try run(["cleanse", "--rule", "fill-session", "--venue", "XNYS", "--reference", "XNAS", "--dry-run"] + window)
        #expect(c0 == 0 && lines.contains("\"op\":\"insert\",\"kind\":\"QUOTE\"") && lines.contains("\"bid\":\"1\""), "\(lines) \(e0)")
        let file = dir + "/fill.jsonl"
        try lines.write(toFile: file, atomically: true, encoding: .utf8)
        let (c1, _, e1) = try run(["correct", "--file", file, "--data", dir])
        #expect(c1 == 0, "\(e1)")
        #expect(try replay(dir).contains("MD.XNYS.AAPL.QUOTE"))
        let (c2, _, e2) = try run(["cleanse", "--rule", "fill-session", "--venue", "XNYS"] + window)
        #expect(c2 != 0 && e2.contains("--reference"), "\(e2)")
    }
}
