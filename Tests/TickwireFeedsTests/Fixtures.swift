import Foundation

/// The real captures in Tests/Fixtures (see PROVENANCE.md), found from this file's path.
enum Fixture {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
    static let itchSlice = path("nasdaq_itch50_20191230_0930_1000msgs.itch50")
    static let zeroPrefix = path("ritch_synthetic_zero_length_prefix.itch50")
    static let tardisTrades = path("tardis_trades_nautilus.csv")
    static let tardisQuotes = path("tardis_quotes_nautilus.csv")
    static let lobsterMessages = path("lobster_AAPL_2012-06-21_message_10_head.csv")
    static func bytes(_ path: String) -> [UInt8] { Array(FileManager.default.contents(atPath: path)!) }

    /// A scratch file under /tmp with `bytes`, named `name` (the name can carry a date).
    static func scratch(_ name: String, _ bytes: [UInt8]) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tickwire-feeds-\(getpid())-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let p = dir.appendingPathComponent(name).path
        _ = FileManager.default.createFile(atPath: p, contents: Data(bytes))
        return p
    }
}
