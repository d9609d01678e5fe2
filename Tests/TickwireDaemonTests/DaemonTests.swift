import Foundation
import TickwireTestSupport
import Testing
import TickwireCore
import TickwireClient
import TickwireDaemon
#if canImport(Glibc)
import Glibc
#endif

/// Each test starts a real `tickwire run` on free loopback ports; serialized so two cores are not oversubscribed.
@Suite(.serialized) struct DaemonTests {
    /// `[trades] cpus` keeps the trade service's thread (`tw-trades`) to those CPUs; without it, it may run on any.
    @Test func theTradeServiceThreadRunsOnTheConfiguredCPUs() throws {
        func allowed(_ daemon: DaemonProcess) throws -> String {
            let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(daemon.child.pid)/task")
            let thread = try #require(tasks.first { (try? String(contentsOfFile: "/proc/\(daemon.child.pid)/task/\($0)/comm", encoding: .utf8)) == "tw-trades\n" },
                                      "no thread named tw-trades")
            let status = try String(contentsOfFile: "/proc/\(daemon.child.pid)/task/\(thread)/status", encoding: .utf8)
            return try #require(status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") }).split(separator: "\t").last.map(String.init) ?? ""
        }
        let any = try allowed(DaemonProcess())
        let last = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) - 1
        let dir = temporaryDirectory("cpus")
        try "[trades]\ncpus = [\(last)]\n".write(toFile: dir + "/t.toml", atomically: true, encoding: .utf8)
        #expect(try allowed(DaemonProcess(["--config", dir + "/t.toml"])) == "\(last)")
        #expect(any == (last == 0 ? "0" : "0-\(last)"))
    }

    @Test func tailReceivesAThousandWellFormedGaplessEvents() throws {
        let daemon = try DaemonProcess(["--rate", "20000"])
        let r = try DaemonProcess.tickwire(["tail", "MD.>", "--count", "1000", "--format", "jsonl", "--connect", daemon.pub, "--timeout", "10"])
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count == 1000)
        var lastSeq: UInt64? = nil
        var kinds = Set<String>()
        var venues = Set<String>(), symbols = Set<String>()
        for line in lines {
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let subject = try #require(obj["subject"] as? String)
            _ = try Subject(subject)
            #expect(try SubjectPattern("MD.*.*.*").matches(Subject(subject)))
            let tokens = subject.split(separator: ".")
            venues.insert(String(tokens[1])); symbols.insert(String(tokens[2]))
            let kind = try #require(obj["kind"] as? String)
            kinds.insert(kind)
            #expect(String(tokens[3]) == kind)
            let seq = try #require((obj["seq"] as? NSNumber)?.uint64Value)
            if let lastSeq { #expect(seq == lastSeq + 1, "sequence must be gapless") }
            lastSeq = seq
            #expect((obj["event_time"] as? NSNumber)?.int64Value ?? 0 > 1_700_000_000_000_000_000)
            #expect((obj["known_time"] as? NSNumber)?.int64Value ?? 0 >= (obj["event_time"] as? NSNumber)?.int64Value ?? 0)
            switch kind {
            case "TRADE":
                for k in ["price", "size", "side", "trade_id"] { #expect(obj[k] != nil, "TRADE lacks \(k)") }
            case "QUOTE":
                for k in ["bid", "bid_size", "ask", "ask_size"] { #expect(obj[k] != nil, "QUOTE lacks \(k)") }
                #expect((obj["bid"] as! NSNumber).doubleValue < (obj["ask"] as! NSNumber).doubleValue)
            default: break
            }
        }
        #expect(kinds.isSuperset(of: ["TRADE", "QUOTE"]))
        #expect(venues.count >= 2)
        #expect(symbols.count >= 20)
    }

    @Test func pythonClientWrittenFromTheProtocolDecodesTheSameEvents() throws {
        // Both subscribers connect first and the daemon starts after them, so both see the feed from its start.
        let port = freePort()
        let endpoint = "tcp://127.0.0.1:\(port)"
        let py = try ChildProcess("/usr/bin/env", ["python3", packageRoot + "/Tools/subscribe.py", "MD.>", "--connect", endpoint,
                                                   "--count", "1000", "--timeout", "30"])
        let tail = try ChildProcess(tickwireBinary, ["tail", "MD.>", "--count", "1000", "--connect", endpoint, "--timeout", "30"])
        usleep(500_000)
        let daemon = try DaemonProcess(["--rate", "2000"], pubPort: port)
        #expect(tail.wait(seconds: 60) == 0, "\(tail.stderr)")
        #expect(py.wait(seconds: 60) == 0, "\(py.stderr)")
        _ = daemon
        // The two joined at slightly different moments: every event both saw must print identically.
        func bySeq(_ text: String) -> [UInt64: String] {
            var out = [UInt64: String]()
            for line in text.split(separator: "\n") {
                guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      let seq = (obj["seq"] as? NSNumber)?.uint64Value else { continue }
                out[seq] = String(line)
            }
            return out
        }
        let a = bySeq(tail.stdout), b = bySeq(py.stdout)
        #expect(a.count == 1000 && b.count == 1000)
        let common = Set(a.keys).intersection(b.keys)
        #expect(common.count >= 500)
        for seq in common { #expect(a[seq] == b[seq]) }
    }

    @Test func aSecondDaemonOnABusyPortFailsClearly() throws {
        let first = try DaemonProcess(["--rate", "100"])
        let r = try DaemonProcess.tickwire(["run", "--pub", first.pub, "--metrics", "127.0.0.1:\(freePort())",
                                            "--data", temporaryDirectory("second")], seconds: 15)
        #expect(r.status != 0)
        #expect(r.stderr.contains("already in use"), "\(r.stderr)")
        #expect(r.stderr.contains(first.pub))
    }

    @Test func aSecondDaemonOnTheSameDataDirectoryFailsClearly() throws {
        let first = try DaemonProcess(["--rate", "100"])
        let r = try DaemonProcess.tickwire(["run", "--pub", "tcp://127.0.0.1:\(freePort())", "--metrics", "127.0.0.1:\(freePort())",
                                            "--data", first.data], seconds: 15)
        #expect(r.status != 0)
        #expect(r.stderr.contains("another tickwire daemon holds"), "\(r.stderr)")
    }

    @Test(arguments: [SIGINT, SIGTERM])
    func signalsShutDownCleanly(_ sig: Int32) throws {
        let daemon = try DaemonProcess(["--rate", "5000"])
        usleep(200_000)
        daemon.child.signal(sig)
        #expect(daemon.child.wait(seconds: 10) == 0)
        #expect(daemon.child.stderr.contains("tickwire stopped"))
    }

    @Test func configTyposNameTheKey() throws {
        let dir = temporaryDirectory("config")
        let file = dir + "/tickwire.toml"
        try "[sim]\nrate = 10\nsymbolz = 3\n".write(toFile: file, atomically: true, encoding: .utf8)
        let r = try DaemonProcess.tickwire(["run", "--config", file, "--data", dir], seconds: 15)
        #expect(r.status != 0)
        #expect(r.stderr.contains("sim.symbolz"), "\(r.stderr)")
        try "[publish]\nendpoint = 5556\n".write(toFile: file, atomically: true, encoding: .utf8)
        let r2 = try DaemonProcess.tickwire(["run", "--config", file, "--data", dir], seconds: 15)
        #expect(r2.stderr.contains("publish.endpoint") && r2.stderr.contains("expected a string"), "\(r2.stderr)")
    }

    @Test func configFileRunsTheDaemon() throws {
        let dir = temporaryDirectory("configrun")
        let file = dir + "/tickwire.toml"
        let port = freePort()
        try """
        data = "\(dir)/data"
        [publish]
        endpoint = "tcp://127.0.0.1:\(port)"
        [sim]
        rate = 5000
        symbols = ["AAA", "BBB"]
        venues = ["X1", "X2", "X3"]
        [metrics]
        endpoint = "127.0.0.1:\(freePort())"
        [trades]
        endpoint = "tcp://127.0.0.1:\(freePort())"
        """.write(toFile: file, atomically: true, encoding: .utf8)
        let d = try ChildProcess(tickwireBinary, ["run", "--config", file])
        defer { d.signal(SIGTERM); _ = d.wait(seconds: 10) }
        #expect(d.waitForOutput("tickwire running", seconds: 30), "\(d.stderr)")
        let r = try DaemonProcess.tickwire(["tail", "MD.*.BBB.>", "--count", "50", "--connect", "tcp://127.0.0.1:\(port)", "--timeout", "10"])
        #expect(r.status == 0, "\(r.stderr)")
        for line in r.stdout.split(separator: "\n") { #expect(line.contains("\"subject\":\"MD.X")); #expect(line.contains(".BBB.")) }
    }

    @Test func tailRejectsBadPatternsAndTimesOut() throws {
        let bad = try DaemonProcess.tickwire(["tail", "MD.>.AAPL"])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("'>' must be the last token"), "\(bad.stderr)")
        let quiet = try DaemonProcess.tickwire(["tail", "MD.>", "--connect", "tcp://127.0.0.1:\(freePort())", "--timeout", "0.5"])
        #expect(quiet.status == 1)
        #expect(quiet.stderr.contains("within 0.5 seconds"))
    }

    @Test func statsShowsTheSubscriptions() throws {
        let daemon = try DaemonProcess(["--rate", "5000"])
        usleep(300_000)
        let r = try DaemonProcess.tickwire(["stats", "--metrics", daemon.metrics])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("zmq-publisher"))
        #expect(r.stdout.contains("sim"))
        let raw = try DaemonProcess.tickwire(["stats", "--metrics", daemon.metrics, "--raw"])
        let samples = StatsTable.parse(raw.stdout)
        #expect((samples.first { $0.name == "tickwire_ring_published_total" }?.value ?? 0) > 0)
    }
}

@Suite struct ConfigTests {
    @Test func parsesEverySection() throws {
        let c = try DaemonConfig.parse(toml: """
        data = "/tmp/x"
        log_level = "debug"
        sources = ["sim"]
        [publish]
        endpoint = "tcp://127.0.0.1:6000"
        high_water_mark = 10
        [ring]
        capacity = 1024
        [sim]
        rate = 0
        symbols = 30
        venues = ["A", "B"]
        seed = 7
        """)
        #expect(c.dataDirectory == "/tmp/x" && c.logLevel == "debug" && c.publishEndpoint == "tcp://127.0.0.1:6000")
        #expect(c.publishHighWaterMark == 10 && c.ringCapacity == 1024 && c.simRate == 0 && c.simSeed == 7)
        #expect(c.resolvedSimSymbols.count == 30)
    }

    @Test func errorsNameTheKey() {
        let cases: [(String, String)] = [
            ("bogus = 1", "bogus"),
            ("[ring]\ncapacity = 1000", "ring.capacity"),
            ("[sim]\nrate = -1", "sim.rate"),
            ("[sim]\nvenues = [\"X.Y\"]", "sim.venues"),
            ("log_level = \"loud\"", "log_level"),
            ("[nope]\na = 1", "nope"),
            ("[sim\nrate = 1", "line 1"),
            ("[[alerts]]\nrule = \"price_jumpp\"\nsubjects = \"MD.>\"", "price_jumpp"),
            ("[[alerts]]\nrule = \"price_jump\"\nsubjects = \"MD.*.*.TRADE\"\nbps = -5", "bps"),
            ("[risk.default]\nmax_order_quantity = \"lots\"", "max_order_quantity"),
            ("[risk.desks.DESK7]\nmax_postion = 5", "max_postion"),
            ("[trades]\njournal_segment_bytes = 100", "trades.journal_segment_bytes"),
            ("[trades]\ncpus = [100000]", "'trades.cpus': CPU 100000 is not one of this machine's"),
            ("[trades]\ncpus = 0", "'trades.cpus': expected an array of integers"),
            ("[trades]\nreplication = \"raft\"", "'raft' is not one of none, jetstream"),
            ("[trades]\nreplication = \"jetstream\"\nnode = \"a\"", "trades.nats"),
            ("[trades]\nreplication = \"jetstream\"\nnats = \"nats://a:4222\"", "trades.node"),
            ("[trades]\nreplication = \"jetstream\"\nnats = \"http://a:80\"\nnode = \"a\"", "'http://a:80'"),
            ("[trades]\nreplication = \"jetstream\"\nnats = \"nats://a:4222\"\nnode = \"a.b\"", "trades.node"),
            ("[trades]\nreplication = \"jetstream\"\nnats = \"nats://a:4222\"\nnode = \"a\"\nreplicas = 7", "trades.replicas"),
            ("[trades]\nreplication = \"jetstream\"\nnats = \"nats://a:4222\"\nnode = \"a\"\nstream = \"a.b\"", "trades.stream"),
            ("[trades]\nnode = \"a\"", "only with replication"),
        ]
        for (toml, key) in cases {
            #expect {
                try DaemonConfig.parse(toml: toml)
            } throws: { error in
                "\(error)".contains(key)
            }
        }
    }
}

/// A remote subscriber that stops reading is cut at the high-water marks; the feed goes on, and when the
/// subscriber reads again it sees exactly which messages it lost.
@Suite(.serialized) struct SlowSubscriberTests {
    @Test func aStalledSubscriberSeesTheGapAndTheFeedIsNotHeldBack() throws {
        let dir = temporaryDirectory("slow")
        let file = dir + "/t.toml"
        try "[publish]\nhigh_water_mark = 200\n".write(toFile: file, atomically: true, encoding: .utf8)
        let daemon = try DaemonProcess(["--config", file, "--rate", "0", "--symbols", "2"])
        let sub = try Subscriber(endpoint: daemon.pub, patterns: [try SubjectPattern("MD.>")], receiveHighWaterMark: 100)
        // Join, then stall for a second while the daemon publishes as fast as it can (far more than the
        // high-water marks and the kernel's socket buffers hold).
        #expect(try sub.next(timeoutMs: 5000) != nil)
        let publishedBefore = try published(daemon)
        sleep(1)
        let publishedAfter = try published(daemon)
        #expect(publishedAfter > publishedBefore, "the feed went on while the subscriber stalled")
        var gaps: [(String, UInt64, UInt64)] = []
        for _ in 0..<1_000_000 {
            guard let d = try sub.next(timeoutMs: 2000) else { break }
            if case .gap(let s, let first, let last) = d { gaps.append((s, first, last)) }
            if gaps.count >= 2 { break }
        }
        #expect(!gaps.isEmpty, "the stalled subscriber must see the loss")
        for (subject, first, last) in gaps {
            #expect(subject.hasPrefix("MD."))
            #expect(last >= first)
        }
        #expect(sub.lost > 0)
    }

    func published(_ d: DaemonProcess) throws -> Double {
        let r = try DaemonProcess.tickwire(["stats", "--metrics", d.metrics, "--raw"])
        return StatsTable.parse(r.stdout).first { $0.name == "tickwire_ring_published_total" }?.value ?? 0
    }
}
