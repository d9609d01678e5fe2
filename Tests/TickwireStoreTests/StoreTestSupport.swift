import Foundation
import Testing
import TickwireCore
@testable import TickwireStore

/// A fresh directory under /tmp, removed by `cleanUp`.
func scratchDirectory(_ name: String = #function) -> String {
    let safe = name.filter { $0.isLetter || $0.isNumber }
    let dir = "/tmp/tickwire-store-tests/\(safe)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try? FileManager.default.removeItem(atPath: dir)
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

func cleanUp(_ dir: String) { try? FileManager.default.removeItem(atPath: dir) }

/// 2026-01-05T14:30:00Z, the synthetic session open used by the tests.
let sessionOpen = try! Nanos(parsing: "2026-01-05T14:30:00Z")
func t(_ seconds: Double) -> Nanos { Nanos(sessionOpen.rawValue + Int64(seconds * 1e9)) }

/// Builds events against one subject table.
struct Events {
    let table = SubjectTable()

    func trade(_ subject: String, at e: Nanos, known k: Nanos, price: Int64, size: Int64 = 100, id: UInt64) -> Event {
        .trade(table.intern(text: subject), price: Price(e8: price * 1_000_000), size: Quantity(e8: size * 100_000_000),
               side: .buy, tradeID: id, eventTime: e, knownTime: k)
    }

    func quote(_ subject: String, at e: Nanos, known k: Nanos, bid: Int64, ask: Int64) -> Event {
        .quote(table.intern(text: subject), bid: Price(e8: bid * 1_000_000), bidSize: Quantity(e8: 500 * 100_000_000),
               ask: Price(e8: ask * 1_000_000), askSize: Quantity(e8: 300 * 100_000_000), eventTime: e, knownTime: k)
    }

    func bust(_ subject: String, at e: Nanos, known k: Nanos, id: UInt64) -> Event {
        .bust(table.intern(text: subject), tradeID: id, eventTime: e, knownTime: k)
    }

    func write(_ events: [Event], to dir: String, seal: Bool = true) throws {
        let w = try StoreWriter(directory: dir, subjects: table)
        for e in events { try w.append(e) }
        try w.flush()
        if seal { try w.seal() }
        try w.close()
    }
}

/// A readable digest of read-back events: subject, kind, event time offset, known time offset, a.
func digest(_ events: [StoredEvent]) -> [String] {
    events.map { "\($0.subject) \($0.event.kind) e=\($0.event.eventTime.rawValue - sessionOpen.rawValue) k=\($0.event.knownTime.rawValue - sessionOpen.rawValue) a=\($0.event.a)" }
}

func read(_ dir: String, _ pattern: String = ">", from: Nanos = t(-3600), to: Nanos = t(36000), asOf: Nanos? = nil) throws -> [StoredEvent] {
    try StoreReader(directory: dir).events(StoreQuery(subjects: try SubjectPattern(pattern), from: from, to: to, asOf: asOf))
}

/// Runs `body` with the path of a small tmpfs mounted for it (`size` as mount(8) takes it), unmounted afterwards
/// (mounting needs root: tests using it are enabled only then; a failed mount is recorded as an issue).
func withSmallTmpfs(size: String, _ body: (String) throws -> Void) throws {
    let dir = scratchDirectory("tmpfs")
    defer { cleanUp(dir) }
    guard mount("tmpfs", dir, "tmpfs", 0, "size=\(size)") == 0 else {
        Issue.record("mounting a tmpfs needs root: errno \(errno)")
        return
    }
    defer { umount(dir) }
    try body(dir)
}
