import TickwireZMQ
#if canImport(Glibc)
import Glibc
#endif

/// Z85 (ZeroMQ RFC 32) for CURVE keys: the ZAP handler receives 32 binary bytes and compares Z85 text.
public enum Z85 {
    static let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#".utf8)

    /// Text of bytes whose count is a multiple of 4.
    public static func encode(_ bytes: [UInt8]) -> String? {
        guard bytes.count % 4 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(bytes.count / 4 * 5)
        var i = 0
        while i < bytes.count {
            var v = UInt32(bytes[i]) << 24 | UInt32(bytes[i + 1]) << 16 | UInt32(bytes[i + 2]) << 8 | UInt32(bytes[i + 3])
            var chunk = [UInt8](repeating: 0, count: 5)
            for k in (0..<5).reversed() { chunk[k] = alphabet[Int(v % 85)]; v /= 85 }
            out.append(contentsOf: chunk)
            i += 4
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// A CURVE key pair as 40-character Z85 text (the secret may be absent for a public-only entry).
public struct CurveKeyPair: Sendable, Equatable {
    public var name: String
    public var publicKey: String
    public var secretKey: String?

    public init(name: String, publicKey: String, secretKey: String?) {
        self.name = name; self.publicKey = publicKey; self.secretKey = secretKey
    }

    /// A fresh pair. - Throws: `ZMQError` when libzmq was built without CURVE.
    public static func generate(name: String) throws(ZMQError) -> CurveKeyPair {
        let (pub, sec) = try ZMQ.curveKeyPair()
        return CurveKeyPair(name: name, publicKey: pub, secretKey: sec)
    }

    /// The key file text (docs/STORAGE.md, "Keys").
    public var fileText: String {
        var s = "# Tickwire CURVE key (Z85). Keep the secret private: this file is mode 0600.\n"
        s += "name = \"\(name)\"\npublic = \"\(publicKey)\"\n"
        if let secretKey { s += "secret = \"\(secretKey)\"\n" }
        return s
    }

    /// Parses key file text. - Throws: `TradeServiceError.keyFile` naming the line.
    public static func parse(_ text: String, path: String) throws(TradeServiceError) -> CurveKeyPair {
        var fields: [String: String] = [:]
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: " \t\r")
            if line.isEmpty || line.hasPrefix("#") { continue }
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: " \t") }
            guard parts.count == 2, parts[1].count >= 2, parts[1].hasPrefix("\""), parts[1].hasSuffix("\"") else {
                throw .keyFile(path: path, reason: "line \(n + 1): expected key = \"value\"")
            }
            fields[parts[0]] = String(parts[1].dropFirst().dropLast())
        }
        guard let name = fields["name"], let pub = fields["public"] else {
            throw .keyFile(path: path, reason: "needs name and public")
        }
        for (k, v) in [("public", pub), ("secret", fields["secret"] ?? pub)] where v.utf8.count != 40 {
            throw .keyFile(path: path, reason: "\(k) key must be 40 Z85 characters, got \(v.utf8.count)")
        }
        return CurveKeyPair(name: name, publicKey: pub, secretKey: fields["secret"])
    }

    /// Writes the key file with mode 0600 (created, or replaced atomically).
    public func write(to path: String) throws(TradeServiceError) {
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .keyFile(path: path, reason: "cannot create: \(String(cString: strerror(errno)))") }
        let bytes = Array(fileText.utf8)
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        fchmod(fd, 0o600)
        let synced = fsync(fd) == 0
        close(fd)
        guard n == bytes.count, synced, rename(tmp, path) == 0 else {
            throw .keyFile(path: path, reason: "cannot write: \(String(cString: strerror(errno)))")
        }
    }

    public static func read(from path: String) throws(TradeServiceError) -> CurveKeyPair {
        guard let text = readText(path) else { throw .keyFile(path: path, reason: "cannot read: \(String(cString: strerror(errno)))") }
        return try parse(text, path: path)
    }
}

func readText(_ path: String) -> String? {
    guard let f = fopen(path, "r") else { return nil }
    defer { fclose(f) }
    var out = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n <= 0 { break }
        out.append(contentsOf: buf[0..<n])
    }
    return String(decoding: out, as: UTF8.self)
}

extension Substring {
    func trimmingCharacters(in set: String) -> String {
        let chars = Set(set)
        var s = self[...]
        while let c = s.first, chars.contains(c) { s = s.dropFirst() }
        while let c = s.last, chars.contains(c) { s = s.dropLast() }
        return String(s)
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String { self[...].trimmingCharacters(in: set) }
}

/// The key files under `DATA/keys/`: `server.key` (the service's pair) and `traders/NAME.key` or `NAME.pub`
/// (each admitted trader; `.key` files also hold the trader's secret, for `tickwire trade submit` on this host).
public enum KeyStore {
    public static func directory(_ data: String) -> String { data + "/keys" }
    public static func serverPath(_ data: String) -> String { directory(data) + "/server.key" }
    public static func tradersDirectory(_ data: String) -> String { directory(data) + "/traders" }

    /// The server pair, and the admitted traders; on first start (no server key, no traders) both are created,
    /// with a first trader `trader1`.
    /// - Returns: the server pair and the traders (name → public key).
    public static func loadOrCreate(data: String, log: (String) -> Void) throws -> (server: CurveKeyPair, traders: [String: String]) {
        let keys = directory(data), traders = tradersDirectory(data)
        for d in [data, keys, traders] where mkdir(d, 0o700) != 0 && errno != EEXIST {
            throw TradeServiceError.keyFile(path: d, reason: "cannot create directory: \(String(cString: strerror(errno)))")
        }
        let server: CurveKeyPair
        if access(serverPath(data), F_OK) == 0 {
            server = try CurveKeyPair.read(from: serverPath(data))
        } else {
            server = try CurveKeyPair.generate(name: "server")
            try server.write(to: serverPath(data))
            log("created the trade service key pair \(serverPath(data))")
        }
        var admitted = try loadTraders(data: data)
        if admitted.isEmpty {
            let first = try CurveKeyPair.generate(name: "trader1")
            try first.write(to: traders + "/trader1.key")
            admitted["trader1"] = first.publicKey
            log("created the first trader's key pair \(traders)/trader1.key")
        }
        return (server, admitted)
    }

    /// Every `traders/*.key` and `traders/*.pub`: name → public key.
    public static func loadTraders(data: String) throws -> [String: String] {
        var out: [String: String] = [:]
        for name in listDirectory(tradersDirectory(data)) where name.hasSuffix(".key") || name.hasSuffix(".pub") {
            let pair = try CurveKeyPair.read(from: tradersDirectory(data) + "/" + name)
            out[pair.name] = pair.publicKey
        }
        return out
    }

    /// A trader's full pair from `traders/NAME.key` (the first one, by name, when `name` is nil).
    public static func traderPair(data: String, name: String?) throws -> CurveKeyPair {
        let files = listDirectory(tradersDirectory(data)).filter { $0.hasSuffix(".key") }.sorted()
        guard let file = name.map({ "\($0).key" }) ?? files.first, files.contains(file) else {
            throw TradeServiceError.keyFile(path: tradersDirectory(data), reason: name.map { "no key file \($0).key" } ?? "no trader key file (start `tickwire run` once, or use `tickwire keygen`)")
        }
        let pair = try CurveKeyPair.read(from: tradersDirectory(data) + "/" + file)
        guard pair.secretKey != nil else { throw TradeServiceError.keyFile(path: file, reason: "has no secret key") }
        return pair
    }

    static func listDirectory(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let e = readdir(dir) {
            let n = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if n != "." && n != ".." { names.append(n) }
        }
        return names
    }
}
