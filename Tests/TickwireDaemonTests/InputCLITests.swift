import Foundation
import Testing
import TickwireCore
import TickwireTestSupport
import TickwireZMQ
#if canImport(Glibc)
import Glibc
#endif

/// Issue 13 through the real `tickwire` binary: bad input is named, counted and fails the run; bad arguments
/// exit 64 (ArgumentParser's EX_USAGE), bad data 1 (README, "Exit codes").
@Suite(.timeLimit(.minutes(5))) struct InputCLITests {
    static let fixtures = packageRoot + "/Tests/Fixtures"
    static let itch = fixtures + "/nasdaq_itch50_20191230_0930_1000msgs.itch50"

    static func file(_ name: String, _ bytes: [UInt8]) -> String {
        let path = temporaryDirectory("input") + "/" + name
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    static func lines(_ s: String) -> [Substring] { s.split(separator: "\n") }

    /// The fixture with the 100th frame's length byte set to 0xFF; returns the file and that frame's offset.
    static func damagedFixture() -> (path: String, offset: Int) {
        var bytes = Array(FileManager.default.contents(atPath: itch)!)
        var o = 0
        for _ in 0..<100 { o += 2 + Int(bytes[o]) << 8 + Int(bytes[o + 1]) }
        bytes[o + 1] = 0xFF
        return (file("damaged_20191230.itch50", bytes), o)
    }

    /// One length byte of the 100th frame damaged: skip mode loses that one message, counts it, and exits 1.
    @Test func decodeSkipResyncsCountsAndFails() throws {
        let (damaged, o) = Self.damagedFixture()
        let clean = try DaemonProcess.tickwire(["decode", "--source", "itch:\(Self.itch)", "--on-error", "skip"])
        #expect(clean.status == 0 && clean.stderr.isEmpty)
        let r = try DaemonProcess.tickwire(["decode", "--source", "itch:\(damaged)", "--on-error", "skip", "--stats"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("1 bad frames skipped (37 bytes, 1 damaged messages); 999 messages read; first: ITCH frame at byte \(o): message type 'U' declares 255 bytes; it must be 35"))
        #expect(r.stderr.contains("skipped_messages 1") && r.stderr.contains("skipped_bytes 37"))
        let lost = Self.lines(clean.stdout).count - Self.lines(r.stdout).count
        #expect((0...3).contains(lost), "events lost: \(lost)")
        let stop = try DaemonProcess.tickwire(["decode", "--source", "itch:\(damaged)"])
        #expect(stop.status == 1 && stop.stderr.contains("ITCH frame at byte \(o)"))
    }

    /// `import --skip-errors` stores what it could and says, with exit 1, what it skipped.
    @Test func importSkipStoresTheRestAndFails() throws {
        let (damaged, o) = Self.damagedFixture()
        let data = temporaryDirectory("import-skip")
        defer { try? FileManager.default.removeItem(atPath: data) }
        let r = try DaemonProcess.tickwire(["import", "--source", "itch:\(damaged)", "--skip-errors", "--data", data], seconds: 60)
        #expect(r.status == 1 && r.stdout.contains("events stored") && r.stderr.contains("ITCH frame at byte \(o)"), "\(r)")
    }

    @Test func emptyZerosFifoAndDevicesFailClearly() throws {
        let empty = Self.file("empty_20191230.itch50", [])
        var r = try DaemonProcess.tickwire(["decode", "--source", "itch:\(empty)"])
        #expect(r.status == 1 && r.stderr.contains("no ITCH messages in '\(empty)': the file is empty"))
        let zeros = Self.file("zeros_20191230.itch50", [UInt8](repeating: 0, count: 1000))
        r = try DaemonProcess.tickwire(["decode", "--source", "itch:\(zeros)", "--on-error", "skip"])
        #expect(r.status == 1 && r.stderr.contains("no ITCH messages in '\(zeros)': 1000 bytes"))
        r = try DaemonProcess.tickwire(["decode", "--source", "itch:/dev/zero", "--date", "2019-12-30"], seconds: 10)
        #expect(r.status == 1 && r.stderr.contains("'/dev/zero' is a character device"))
        let fifo = temporaryDirectory("fifo") + "/feed_20191230.itch50"
        #expect(mkfifo(fifo, 0o600) == 0)
        r = try DaemonProcess.tickwire(["decode", "--source", "itch:\(fifo)"], seconds: 10)
        #expect(r.status == 1 && r.stderr.contains("is a FIFO (named pipe)"), "\(r.stderr)")
    }

    @Test func crlfAndNegativeSizesInCSV() throws {
        let lobster = Self.fixtures + "/lobster_AAPL_2012-06-21_message_10_head.csv"
        var crlf = [UInt8]()
        for b in FileManager.default.contents(atPath: lobster)! { if b == 10 { crlf.append(13) }; crlf.append(b) }
        let copy = Self.file("AAPL_2012-06-21_34200000_57600000_message_10.csv", crlf)
        let lf = try DaemonProcess.tickwire(["decode", "--source", "lobster:\(lobster)"])
        let r = try DaemonProcess.tickwire(["decode", "--source", "lobster:\(copy)"])
        #expect(lf.status == 0 && r.status == 0 && Self.lines(r.stdout).count == Self.lines(lf.stdout).count)
        #expect(r.stdout == lf.stdout)
        let quotes = Self.file("quotes.csv", Array("""
        exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount
        binance-futures,BTCUSDT,1582329602111000,1582329602418379,0.84,9682,9681.92,-0.67

        """.utf8))
        let stop = try DaemonProcess.tickwire(["decode", "--source", "tardis-quotes:\(quotes)"])
        #expect(stop.status == 1 && stop.stderr.contains("\(quotes):2: field 'bid_amount': '-0.67' is negative"))
        let skip = try DaemonProcess.tickwire(["decode", "--source", "tardis-quotes:\(quotes)", "--on-error", "skip"])
        #expect(skip.status == 1 && skip.stderr.contains("skipped 1 of 1 rows; first: \(quotes):2: field 'bid_amount'"))
    }

    /// `run` has no --date: the message names the config key; decode's names its flag. Both are usage errors.
    @Test func missingDateNamesTheRealWay() throws {
        let undated = Self.file("capture.itch50", Array(FileManager.default.contents(atPath: Self.itch)!))
        let d = try DaemonProcess.tickwire(["decode", "--source", "itch:\(undated)"])
        #expect(d.status == 64 && d.stderr.contains("--date YYYY-MM-DD"))
        let data = temporaryDirectory("nodate")
        defer { try? FileManager.default.removeItem(atPath: data) }
        let r = try DaemonProcess.tickwire(["run", "--source", "itch:\(undated)", "--data", data,
                                            "--pub", "tcp://127.0.0.1:\(freePort())", "--trades", "tcp://127.0.0.1:\(freePort())",
                                            "--metrics", "127.0.0.1:\(freePort())"])
        #expect(r.status != 0)
        let hint = "set date = \"YYYY-MM-DD\" under [feeds] in the config file and pass it with --config FILE (tickwire run has no --date)"
        #expect(r.stderr.contains(hint) && !r.stderr.contains("--date YYYY"), "\(r.stderr)")
        let config = Self.file("tickwire.toml", Array("[feeds]\ndate = \"2019-12-30\"\n".utf8))
        let dated = try DaemonProcess(["--source", "itch:\(undated)", "--config", config])
        #expect(dated.child.waitForOutput("source finished", seconds: 30), "\(dated.child.stderr)")
    }

    @Test func tradePriceThatLooksLikeAFlagIsCheckedNotMissing() throws {
        for price in [["--price", "-5"], ["--price=-5"]] {
            let r = try DaemonProcess.tickwire(["trade", "submit", "--desk", "D1", "--symbol", "AAPL", "--side", "buy", "--qty", "1",
                                                "--id", "x1", "--data", temporaryDirectory("nokeys")] + price)
            #expect(r.status == 64)
            #expect(r.stderr.contains("price must be positive, got -5") && !r.stderr.contains("Missing value"), "\(r.stderr)")
        }
        let q = try DaemonProcess.tickwire(["trade", "submit", "--desk", "D1", "--symbol", "AAPL", "--side", "buy", "--qty", "-1",
                                            "--price", "1", "--id", "x1"])
        #expect(q.status == 64 && q.stderr.contains("quantity must be positive"))
    }
}

/// `tickwire tail` against a raw publisher that sends exactly what a test wants.
@Suite(.timeLimit(.minutes(5))) struct TailCLITests {

    /// Sends `send()` every 50 ms until `child` prints `text` or exits; false on timeout.
    func feed(_ child: ChildProcess, until text: String, seconds: Double = 20, _ send: () throws -> Void) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if child.stdout.contains(text) { return true }
            if !child.isRunning { return child.stdout.contains(text) }
            try send()
            usleep(50_000)
        }
        return false
    }

    @Test func invalidPatternIsAUsageError() throws {
        for bad in ["MD..X", "MD.>.X", "MD.A*"] {
            let r = try DaemonProcess.tickwire(["tail", bad, "--timeout", "1"])
            #expect(r.status == 64 && r.stderr.contains("invalid pattern '\(bad)'"), "\(bad): \(r.stderr)")
        }
        let r = try DaemonProcess.tickwire(["tail", "MD.>", "--timeout", "0"])
        #expect(r.status == 64 && r.stderr.contains("--timeout must be a positive number"))
    }

    /// Wrong frame counts and bad payloads are counted and reported; after an event, tail never says "nothing yet".
    @Test func malformedMessagesAreReportedAndTimeoutMessagesAreTrue() throws {
        let (_, pub, endpoint) = try publisher()
        let tail = try ChildProcess(tickwireBinary, ["tail", "MD.X.*.QUOTE", "--connect", endpoint, "--timeout", "6", "--format", "text"])
        defer { tail.signal(SIGKILL) }
        let subject = Array("MD.X.A.QUOTE".utf8)
        var n: UInt64 = 0
        let got = try feed(tail, until: "QUOTE") {
            try pub.sendMultipart([subject])                                            // one frame
            try pub.sendMultipart([subject, [1], [2]])                                  // three frames
            try pub.sendMultipart([subject, [1, 2, 3]])                                 // short payload
            n += 1
            try pub.sendMultipart([subject, WireCodec.encode(quote(n), subjectSeq: n)])
        }
        #expect(got)
        let status = tail.wait(seconds: 30)
        #expect(status == 1)
        let err = tail.stderr
        #expect(err.contains("malformed message skipped ("), "\(err)")
        #expect(err.contains("with a wrong frame count") && err.contains("with a bad subject or payload"))
        #expect(err.contains("events printed, then none matching MD.X.*.QUOTE from \(endpoint) for 6.0 seconds"), "\(err)")
        #expect(!err.contains("nothing yet") && !err.contains("no event matching"), "\(err)")
    }

    /// Events that keep arriving faster than tail's 200 ms poll still reach stdout promptly (they sat in a 64 KiB
    /// buffer, so a slow feed showed nothing and looked like "nothing yet").
    @Test func aTrickleOfEventsIsPrintedPromptly() throws {
        let (_, pub, endpoint) = try publisher()
        let tail = try ChildProcess(tickwireBinary, ["tail", "MD.X.*.QUOTE", "--connect", endpoint, "--count", "100000"])
        defer { tail.signal(SIGKILL) }
        let subject = Array("MD.X.A.QUOTE".utf8)
        var n: UInt64 = 0
        let got = try feed(tail, until: "\"subject\":\"MD.X.A.QUOTE\"", seconds: 8) {
            n += 1
            try pub.sendMultipart([subject, WireCodec.encode(quote(n), subjectSeq: n)])
        }
        #expect(got, "nothing on stdout after \(n) events; stderr: \(tail.stderr)")
        #expect(!tail.stderr.contains("nothing yet"))
    }

    /// STALE_QUOTE's words are an age and a window in milliseconds and the last quote's time in nanoseconds.
    @Test func staleQuoteAlertPrintsDurationsAndATime() throws {
        let (_, pub, endpoint) = try publisher()
        let lastQuote: Int64 = 1_577_716_200_000_000_230   // 2019-12-30T14:30:00.000000230Z
        var alert = Event(subjectID: 0, kind: .alert, eventTime: Nanos(lastQuote + 5_200_500_000), knownTime: Nanos(lastQuote + 5_200_500_000),
                          seq: 1, a: 5, b: 5_200_5 * 10_000_000, c: 5_000 * 100_000_000, d: lastQuote)
        alert.seq = 1
        let subject = Array("ALERT.STALE_QUOTE.AAPL".utf8)
        for format in ["text", "jsonl"] {
            let tail = try ChildProcess(tickwireBinary, ["tail", "ALERT.>", "--connect", endpoint, "--count", "1", "--format", format])
            defer { tail.signal(SIGKILL) }
            #expect(try feed(tail, until: "STALE") { try pub.sendMultipart([subject, WireCodec.encode(alert, subjectSeq: 1)]) })
            #expect(tail.wait(seconds: 10) == 0)
            let out = tail.stdout
            if format == "text" {
                #expect(out.contains("ALERT rule=5 STALE_QUOTE age=5200.5ms window=5000ms last_quote=2019-12-30T14:30:00.000000230Z"), "\(out)")
            } else {
                #expect(out.contains("\"rule\":5,\"value\":5200.5,\"threshold\":5000,\"reference\":\(lastQuote)}"), "\(out)")
            }
        }
    }
}
