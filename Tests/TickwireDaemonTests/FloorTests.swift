import Foundation
import TickwireTestSupport
import Testing
import TickwireCore
import TickwireDaemon
#if canImport(Glibc)
import Glibc
#endif

/// The trading floor's other consumers against a real `tickwire run`: every event stored and replayable, trades
/// checked by risk before the journal, positions rebuilt after kill -9, alerts and rejections in the metrics.
@Suite(.serialized) struct FloorTests {
    func submit(_ d: DaemonProcess, _ id: String, qty: String, price: String, side: String = "buy") throws -> String {
        let r = try DaemonProcess.tickwire(["trade", "submit", "--data", d.data, "--connect", "tcp://127.0.0.1:\(d.tradePort)",
                                            "--desk", "DESK7", "--symbol", "AAPL", "--side", side, "--qty", qty, "--price", price, "--id", id])
        return r.stdout + r.stderr
    }

    /// The AAPL price the simulator is quoting now, from the live feed.
    func marketPrice(_ d: DaemonProcess) throws -> String {
        let r = try DaemonProcess.tickwire(["tail", "MD.XNAS.AAPL.TRADE", "--count", "1", "--connect", d.pub, "--timeout", "10"])
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        return "\(obj["price"]!)"
    }

    func metric(_ d: DaemonProcess, _ name: String, _ labels: [String: String] = [:]) throws -> Double {
        let raw = try DaemonProcess.tickwire(["stats", "--metrics", d.metrics, "--raw"]).stdout
        return StatsTable.parse(raw).first { sample in
            sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value }
        }?.value ?? -1
    }

    @Test func submitFileSendsBatchesAndARetryOfTheFileMakesNoNewTrade() throws {
        let data = temporaryDirectory("floorfile")
        let d = try DaemonProcess(["--rate", "2000"], data: data)
        let price = try marketPrice(d)
        var lines = (0..<150).map { #"{"desk":"DESK7","symbol":"AAPL","side":"buy","qty":1,"price":"\#(price)","id":"f-\#($0)"}"# }
        lines.insert(#"{"desk":"DESK7","symbol":"AAPL"}"#, at: 70)   // missing fields: an error naming its line
        let file = data + "/trades.jsonl"
        try lines.joined(separator: "\n").write(toFile: file, atomically: true, encoding: .utf8)
        func run() throws -> [String: Any] {
            let r = try DaemonProcess.tickwire(["trade", "submit", "--data", d.data, "--connect", "tcp://127.0.0.1:\(d.tradePort)",
                                                "--file", file, "--batch", "16", "--window", "64"])
            #expect(r.status == 1, "a bad line makes the exit status 1: \(r.stderr)")
            var byID: [String: Any] = [:]
            for line in r.stdout.split(separator: "\n") {
                let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                byID[(obj["id"] as? String) ?? "line \(obj["line"] ?? "?")"] = obj["seq"] ?? obj["error"]
            }
            return byID
        }
        for bad in [["--batch", "0"], ["--batch", "1025"], ["--window", "0"]] {
            let r = try DaemonProcess.tickwire(["trade", "submit", "--data", d.data, "--file", file] + bad)
            #expect(r.status != 0 && r.stderr.contains(bad[0]), "\(bad): \(r.stderr)")
        }
        let first = try run()
        #expect(first.count == 151)
        #expect("\(first["line 71"] ?? "")".contains("trades.jsonl:71"), "\(first["line 71"] ?? "none")")
        let seqs = (0..<150).compactMap { first["f-\($0)"] as? Int }
        #expect(Set(seqs).count == 150, "every trade acknowledged once with its own sequence")
        let second = try run()
        for i in 0..<150 { #expect(second["f-\(i)"] as? Int == first["f-\(i)"] as? Int, "a retry returns the original sequence") }
        // An id repeated in a file, in one batch and in the next: one line of output a line of input, the repeats
        // answered with the first one's sequence.
        let repeated = data + "/repeated.jsonl"
        let trade = { (id: String) in #"{"desk":"DESK7","symbol":"AAPL","side":"buy","qty":1,"price":"\#(price)","id":"\#(id)"}"# }
        try [trade("r-1"), trade("r-1"), trade("r-2"), trade("r-1")].joined(separator: "\n").write(toFile: repeated, atomically: true, encoding: .utf8)
        let r = try DaemonProcess.tickwire(["trade", "submit", "--data", d.data, "--connect", "tcp://127.0.0.1:\(d.tradePort)",
                                            "--file", repeated, "--batch", "2"])
        #expect(r.status == 0, "\(r.stderr)")
        let out = r.stdout.split(separator: "\n")
        #expect(out.count == 4, "\(r.stdout)")
        let r1 = out.filter { $0.contains(#""id":"r-1""#) }
        #expect(r1.count == 3 && Set(r1).count == 1, "\(r.stdout)")
    }

    /// `--file -` fed one line at a time through a pipe that stays open: each trade is sent as it is read and
    /// its acknowledgement printed before the next line comes (it waited for 64 lines or the end of the input).
    @Test func tradesStreamedOnStandardInputAreAnsweredAsTheyCome() throws {
        let data = temporaryDirectory("floorstdin")
        let d = try DaemonProcess(["--rate", "2000"], data: data)
        let price = try marketPrice(d)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tickwireBinary)
        p.arguments = ["trade", "submit", "--data", d.data, "--connect", "tcp://127.0.0.1:\(d.tradePort)", "--file", "-"]
        let input = Pipe(), output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { p.terminate() } }
        let fd = output.fileHandleForReading.fileDescriptor
        var seen = ""
        /// Reads the command's output until `text` is in it, for at most `seconds`.
        func shows(_ text: String, seconds: Double = 15) -> Bool {
            let deadline = Date() + seconds
            var buffer = [UInt8](repeating: 0, count: 4096)
            while !seen.contains(text) && Date() < deadline {
                var item = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&item, 1, 100) > 0 else { continue }
                let n = read(fd, &buffer, buffer.count)
                if n <= 0 { break }
                seen += String(decoding: buffer[0..<n], as: UTF8.self)
            }
            return seen.contains(text)
        }
        for i in 1...3 {
            let line = #"{"desk":"DESK7","symbol":"AAPL","side":"buy","qty":1,"price":"\#(price)","id":"s-\#(i)"}"# + "\n"
            input.fileHandleForWriting.write(Data(line.utf8))
            #expect(shows(#"{"id":"s-\#(i)","seq":"#), "trade s-\(i) unanswered with the input still open: \(seen)")
        }
        try input.fileHandleForWriting.close()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
    }

    @Test func pythonTradeClientWrittenFromTheProtocolGetsTheSameAcknowledgements() throws {
        let data = temporaryDirectory("floorpy")
        let d = try DaemonProcess(["--rate", "2000"], data: data)
        let price = try marketPrice(d)
        let lines = (0..<5).map { #"{"desk":"DESK7","symbol":"AAPL","side":"sell","qty":2,"price":"\#(price)","id":"py-\#($0)"}"# }
            + [#"{"desk":"DESK7","symbol":"AAPL","side":"buy","qty":0,"price":"\#(price)","id":"py-zero"}"#]
        let file = data + "/py.jsonl"
        try lines.joined(separator: "\n").write(toFile: file, atomically: true, encoding: .utf8)
        let py = try ChildProcess("/usr/bin/env", ["python3", packageRoot + "/Tools/submit_trades.py", file, "--data", d.data,
                                                   "--connect", "tcp://127.0.0.1:\(d.tradePort)", "--batch", "4"])
        #expect(py.wait(seconds: 60) == 1, "one trade is invalid: \(py.stderr)")
        var seqs: [String: Int] = [:]
        var errors: [String: String] = [:]
        for line in py.stdout.split(separator: "\n") {
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
            let id = try #require(obj["id"] as? String)
            if let seq = obj["seq"] as? Int { seqs[id] = seq } else { errors[id] = obj["error"] as? String }
        }
        #expect(seqs.count == 5 && Set(seqs.values).count == 5, "\(py.stdout)")
        #expect(errors["py-zero"]?.contains("quantity") == true, "\(errors)")
        // The same file through tickwire's own client: the retry map answers with the same sequences.
        let r = try DaemonProcess.tickwire(["trade", "submit", "--data", d.data, "--connect", "tcp://127.0.0.1:\(d.tradePort)", "--file", file])
        for i in 0..<5 { #expect(r.stdout.contains(#"{"id":"py-\#(i)","seq":\#(seqs["py-\(i)"] ?? -1)}"#), "\(r.stdout)") }
    }

    @Test func riskRejectsBreachesAndJournalsPermittedTrades() throws {
        let data = temporaryDirectory("floor")
        let d = try DaemonProcess(["--rate", "2000"], data: data)
        let price = try marketPrice(d)
        #expect(try submit(d, "ok-1", qty: "300", price: price).contains("\"seq\":1"))
        let fat = try submit(d, "fat-1", qty: "1000000", price: price)
        #expect(fat.contains("\"error\"") && fat.contains("max_order_quantity"), "\(fat)")
        let farPrice = String(format: "%.2f", (Double(price) ?? 100) * 1.5)   // 50% away from the market
        let far = try submit(d, "far-1", qty: "10", price: farPrice)
        #expect(far.contains("price_collar_bps"), "\(far)")
        #expect(try metric(d, "tickwire_trades_rejected_total", ["reason": "max_order_quantity"]) == 1)
        #expect(try metric(d, "tickwire_trades_rejected_total", ["reason": "price_collar_bps"]) == 1)
        // Limit use is published for the desk.
        let risk = try DaemonProcess.tickwire(["tail", "RISK.DESK7", "--count", "1", "--connect", d.pub, "--timeout", "10"])
        #expect(risk.stdout.contains("\"position\":300"), "\(risk.stdout)")
    }

    @Test func positionsSurviveKill9() throws {
        let data = temporaryDirectory("rebuild")
        let first = try DaemonProcess(["--rate", "2000"], data: data)
        let price = try marketPrice(first)
        #expect(try submit(first, "a", qty: "200", price: price).contains("\"seq\":1"))
        #expect(try submit(first, "b", qty: "50", price: price, side: "sell").contains("\"seq\":2"))
        first.child.signal(SIGKILL)
        _ = first.child.wait(seconds: 10)
        let restarted = try ChildProcess(tickwireBinary, ["run", "--data", data, "--rate", "2000",
                                                          "--pub", "tcp://127.0.0.1:\(freePort())", "--metrics", "127.0.0.1:\(freePort())",
                                                          "--trades", "tcp://127.0.0.1:\(freePort())"])
        defer { restarted.signal(SIGTERM); _ = restarted.wait(seconds: 10) }
        #expect(restarted.waitForOutput("risk rebuilt through seq 2 from", seconds: 30), "\(restarted.stderr)")
    }

    /// A LOBSTER file's events reach the ring in batches (its source never waits, so the daemon's sink collects);
    /// the last, partial batch too: the store holds every event `tickwire decode` prints for the same rows.
    @Test func aLOBSTERFilesEventsAreAllStoredTheLastPartialBatchToo() throws {
        let data = temporaryDirectory("lobster")
        let rows = try String(contentsOfFile: packageRoot + "/Tests/Fixtures/lobster_AAPL_2012-06-21_message_10_head.csv", encoding: .utf8)
            .split(separator: "\n").prefix(333)
        let file = data + "/AAPL_2012-06-21_34200000_57600000_message_10.csv"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try (rows.joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        let decoded = try DaemonProcess.tickwire(["decode", "--source", "lobster:\(file)"]).stdout.split(separator: "\n").count
        #expect(decoded % 64 != 0, "the premise: a partial last batch (\(decoded) events)")
        let d = try DaemonProcess(["--source", "lobster:\(file)"], data: data)
        let deadline = Date().addingTimeInterval(30)
        while !d.child.stderr.contains("source finished") && Date() < deadline { usleep(100_000) }
        usleep(500_000)
        d.child.signal(SIGTERM)
        #expect(d.child.wait(seconds: 20) == 0)
        let stored = try DaemonProcess.tickwire(["replay", "--subjects", "MD.XNAS.AAPL.>", "--from", "2012-06-21", "--to", "2012-06-22",
                                                 "--data", data])
        #expect(stored.status == 0, "\(stored.stderr)")
        #expect(stored.stdout.split(separator: "\n").count == decoded)
    }

    /// Every acknowledged trade becomes one TRADE event on the daemon's ring, with its journal sequence as trade_id,
    /// each subject's in journal order: the trade service hands the trades each group commit makes durable to the forwarding
    /// thread together (one lock, one wake-up), not one by one. Checked in the store after the daemon stops.
    @Test func acknowledgedTradesAreStoredOnceEachInJournalOrder() throws {
        let data = temporaryDirectory("tradeevents")
        let d = try DaemonProcess(["--rate", "200"], data: data)
        let desks = ["DESK1", "DESK2", "DESK3"], symbols = ["ZZA", "ZZB"]   // not simulated: no price collar
        let count = 2_000
        let lines = (0..<count).map { i in
            #"{"desk":"\#(desks[i % 3])","symbol":"\#(symbols[i % 2])","side":"\#(i % 5 == 0 ? "sell" : "buy")","qty":\#(1 + i % 7),"price":"\#(100 + i % 50).25","id":"e-\#(i)"}"#
        }
        let file = data + "/trades.jsonl"
        try lines.joined(separator: "\n").write(toFile: file, atomically: true, encoding: .utf8)
        // A live subscriber: a subscription takes a moment to join, so probe trades (desk PROBE) go first until one
        // shows up there.
        let tail = try ChildProcess(tickwireBinary, ["tail", "TRADE.>", "--connect", d.pub, "--timeout", "60"])
        defer { tail.signal(SIGKILL) }
        var probes = 0
        while !tail.stdout.contains("TRADE.PROBE") && probes < 100 {
            _ = try DaemonProcess.tickwire(["trade", "submit", "--data", d.data, "--connect", "tcp://127.0.0.1:\(d.tradePort)", "--desk", "PROBE",
                                            "--symbol", "ZZA", "--side", "buy", "--qty", "1", "--price", "1", "--id", "p-\(probes)"])
            probes += 1
            usleep(100_000)
        }
        #expect(tail.stdout.contains("TRADE.PROBE"), "the subscriber never joined: \(tail.stderr)")
        let r = try DaemonProcess.tickwire(["trade", "submit", "--data", d.data, "--connect", "tcp://127.0.0.1:\(d.tradePort)",
                                            "--file", file, "--batch", "32", "--window", "512"])
        #expect(r.status == 0, "\(r.stderr)")
        var seqByID: [String: UInt64] = [:]
        for line in r.stdout.split(separator: "\n") {
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            seqByID[try #require(obj["id"] as? String)] = try #require((obj["seq"] as? NSNumber)?.uint64Value)
        }
        #expect(seqByID.count == count)
        let first = UInt64(probes + 1), last = UInt64(probes + count)
        #expect(Set(seqByID.values) == Set(first...last))
        // On the wire: every one, in journal order.
        func live() -> [UInt64] {
            tail.stdout.split(separator: "\n").compactMap { line -> UInt64? in
                guard !line.contains("TRADE.PROBE"), let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
                return (obj["trade_id"] as? NSNumber)?.uint64Value
            }
        }
        let deadline = Date().addingTimeInterval(30)
        while live().count < count && Date() < deadline { usleep(50_000) }
        let seen = live()
        let inOrder = seen == Array(first...last)
        #expect(inOrder, "the live feed: \(seen.count) trades, first out of order at \(zip(seen, first...last).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? -1)")
        d.child.signal(SIGTERM)
        #expect(d.child.wait(seconds: 20) == 0)
        let day = { (t: Date) in ISO8601DateFormatter.string(from: t, timeZone: TimeZone(identifier: "UTC")!, formatOptions: .withFullDate) }
        let stored = try DaemonProcess.tickwire(["replay", "--subjects", "TRADE.*.*", "--from", day(Date().addingTimeInterval(-86_400)),
                                                 "--to", day(Date().addingTimeInterval(86_400)), "--data", data])
        #expect(stored.status == 0, "\(stored.stderr)")
        let idBySeq = Dictionary(uniqueKeysWithValues: seqByID.map { ($0.value, Int($0.key.dropFirst(2))!) })
        var tradeIDs: [UInt64] = [], lastBySubject: [String: UInt64] = [:]
        for line in stored.stdout.split(separator: "\n") {
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let seq = try #require((obj["trade_id"] as? NSNumber)?.uint64Value)
            let subject = try #require(obj["subject"] as? String)
            if subject.hasPrefix("TRADE.PROBE.") { continue }
            tradeIDs.append(seq)
            let i = try #require(idBySeq[seq], "trade_id \(seq) was not acknowledged")
            #expect(subject == "TRADE.\(desks[i % 3]).\(symbols[i % 2])")
            #expect("\(obj["size"] ?? "")" == "\(1 + i % 7)" && "\(obj["price"] ?? "")" == "\(100 + i % 50).25", "\(line)")
            #expect("\(obj["side"] ?? "")" == (i % 5 == 0 ? "sell" : "buy"), "\(line)")
            // The store keeps each subject's events in the order they came (replay merges subjects by event time).
            #expect(seq > lastBySubject[subject, default: 0], "\(subject): trade \(seq) after \(lastBySubject[subject, default: 0])")
            lastBySubject[subject] = seq
        }
        let stored1 = Set(tradeIDs)
        #expect(tradeIDs.count == count && stored1.count == count && stored1 == Set(first...last),
                "each acknowledged trade stored once: \(tradeIDs.count) stored, \(stored1.count) distinct")
    }

    @Test func everyEventIsStoredAndReplaysAfterTheDaemonStops() throws {
        let data = temporaryDirectory("store")
        let fixtures = packageRoot + "/Tests/Fixtures"
        let d = try DaemonProcess(["--source", "tardis-trades:\(fixtures)/tardis_trades_nautilus.csv",
                                   "--source", "tardis-quotes:\(fixtures)/tardis_quotes_nautilus.csv"], data: data)
        // Both captures are read at machine speed; wait until both sources have finished and the store has their
        // events (alerts raised on them count in the store too, so the count alone can be reached early), then stop.
        let deadline = Date().addingTimeInterval(30)
        func finishedSources() -> Int { d.child.stderr.components(separatedBy: "source finished").count - 1 }
        while try (finishedSources() < 2 || metric(d, "tickwire_store_events_total") < 19_998) && Date() < deadline { usleep(100_000) }
        #expect(try metric(d, "tickwire_store_events_total") >= 19_998)
        d.child.signal(SIGTERM)
        #expect(d.child.wait(seconds: 20) == 0)
        let trades = try DaemonProcess.tickwire(["replay", "--subjects", "MD.*.BTCUSDT.TRADE", "--from", "2020-02-22",
                                                 "--to", "2020-02-23", "--data", data])
        #expect(trades.status == 0, "\(trades.stderr)")
        #expect(trades.stdout.split(separator: "\n").count == 9_999)
        // As known at a moment: only what had arrived by then.
        let early = try DaemonProcess.tickwire(["replay", "--subjects", "MD.>", "--from", "2020-02-22", "--to", "2020-02-23",
                                                "--as-of", "1582329603000000000", "--data", data])
        for line in early.stdout.split(separator: "\n") {
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(((obj["known_time"] as? NSNumber)?.int64Value ?? .max) <= 1_582_329_603_000_000_000)
        }
        #expect(!early.stdout.isEmpty)
    }
}
