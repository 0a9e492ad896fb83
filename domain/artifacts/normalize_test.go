package artifacts_test

import (
	"errors"
	"strings"
	"testing"

	"velocicompanion/domain"
	"velocicompanion/domain/artifacts"
)

// norm is one Normalize case: in normalises to want, or is refused when want
// is empty.
type norm struct{ name, in, want string }

var (
	label63   = strings.Repeat("a", 63)
	domain253 = label63 + "." + label63 + "." + label63 + "." + strings.Repeat("b", 57) + ".com" // 253 bytes
)

var normalizeCases = []struct {
	kind  artifacts.Kind
	err   error
	cases []norm
}{
	{artifacts.KindMD5, artifacts.ErrInvalidMD5, []norm{
		{"lowercase_is_kept", "d41d8cd98f00b204e9800998ecf8427e", "d41d8cd98f00b204e9800998ecf8427e"},
		{"uppercase_is_lowered", "D41D8CD98F00B204E9800998ECF8427E", "d41d8cd98f00b204e9800998ecf8427e"},
		{"surrounding_space_is_trimmed", "\t d41d8cd98f00b204e9800998ecf8427e \n", "d41d8cd98f00b204e9800998ecf8427e"},
		{"31_digits_is_invalid", "d41d8cd98f00b204e9800998ecf8427", ""},
		{"33_digits_is_invalid", "d41d8cd98f00b204e9800998ecf8427ee", ""},
		{"non_hex_is_invalid", "g41d8cd98f00b204e9800998ecf8427e", ""},
		{"sha1_is_invalid", "da39a3ee5e6b4b0d3255bfef95601890afd80709", ""},
		{"prefix_0x_is_invalid", "0xd41d8cd98f00b204e9800998ecf842", ""},
		{"inner_space_is_invalid", "d41d8cd98f00b204 e9800998ecf8427", ""},
		{"fullwidth_digits_are_invalid", strings.Repeat("０", 32), ""},
		{"empty_is_invalid", "", ""},
	}},
	{artifacts.KindSHA1, artifacts.ErrInvalidSHA1, []norm{
		{"lowercase_is_kept", "da39a3ee5e6b4b0d3255bfef95601890afd80709", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
		{"uppercase_is_lowered", "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
		{"39_digits_is_invalid", "da39a3ee5e6b4b0d3255bfef95601890afd8070", ""},
		{"41_digits_is_invalid", "da39a3ee5e6b4b0d3255bfef95601890afd807090", ""},
		{"md5_is_invalid", "d41d8cd98f00b204e9800998ecf8427e", ""},
		{"non_hex_is_invalid", "za39a3ee5e6b4b0d3255bfef95601890afd80709", ""},
	}},
	{artifacts.KindSHA256, artifacts.ErrInvalidSHA256, []norm{
		{"lowercase_is_kept", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"uppercase_is_lowered", "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"mixed_case_is_lowered", "e3B0c44298Fc1c149aFbf4c8996fb92427aE41e4649b934ca495991b7852b855", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"63_digits_is_invalid", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85", ""},
		{"65_digits_is_invalid", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555", ""},
		{"non_hex_is_invalid", "x3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", ""},
		{"sha256_prefix_is_invalid", "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b785", ""},
	}},
	{artifacts.KindIPv4, artifacts.ErrInvalidIPv4, []norm{
		{"address_is_kept", "192.0.2.1", "192.0.2.1"},
		{"trimmed", " 192.0.2.1\n", "192.0.2.1"},
		{"unspecified", "0.0.0.0", "0.0.0.0"},
		{"broadcast", "255.255.255.255", "255.255.255.255"},
		{"leading_zero_is_invalid", "192.0.2.01", ""},
		{"octet_over_255_is_invalid", "192.0.2.256", ""},
		{"three_octets_is_invalid", "192.0.2", ""},
		{"decimal_form_is_invalid", "3221225985", ""},
		{"hex_form_is_invalid", "0xc0.0.2.1", ""},
		{"with_port_is_invalid", "192.0.2.1:443", ""},
		{"cidr_is_invalid", "192.0.2.0/24", ""},
		{"ipv6_is_invalid", "2001:db8::1", ""},
		{"ipv4_mapped_ipv6_is_invalid", "::ffff:192.0.2.1", ""},
		{"defanged_is_invalid", "192.0.2[.]1", ""},
	}},
	{artifacts.KindIPv6, artifacts.ErrInvalidIPv6, []norm{
		{"canonical_is_kept", "2001:db8::1", "2001:db8::1"},
		{"uppercase_is_lowered_and_compressed", "2001:DB8:0:0:0:0:0:1", "2001:db8::1"},
		{"leading_zeros_dropped", "2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"},
		{"longest_zero_run_compressed", "2001:db8:0:0:1:0:0:0", "2001:db8:0:0:1::"},
		{"first_of_equal_runs_compressed", "2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},
		{"single_zero_group_not_compressed", "2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"},
		{"loopback", "::1", "::1"},
		{"unspecified", "::", "::"},
		{"ipv4_compatible_is_ipv6", "::192.0.2.1", "::c000:201"},
		{"ipv4_mapped_is_invalid", "::ffff:192.0.2.1", ""},
		{"ipv4_is_invalid", "192.0.2.1", ""},
		{"zone_is_invalid", "fe80::1%eth0", ""},
		{"brackets_are_invalid", "[2001:db8::1]", ""},
		{"triple_colon_is_invalid", "2001:db8:::1", ""},
		{"two_double_colons_is_invalid", "2001::db8::1", ""},
		{"non_hex_is_invalid", "2001:db8::g", ""},
		{"prefix_is_invalid", "2001:db8::/32", ""},
	}},
	{artifacts.KindCIDR, artifacts.ErrInvalidCIDR, []norm{
		{"network_is_kept", "192.0.2.0/24", "192.0.2.0/24"},
		{"host_bits_are_masked", "10.1.2.3/8", "10.0.0.0/8"},
		{"single_address", "192.0.2.1/32", "192.0.2.1/32"},
		{"everything", "0.0.0.0/0", "0.0.0.0/0"},
		{"ipv6_is_lowered_and_masked", "2001:DB8::1/32", "2001:db8::/32"},
		{"ipv6_everything", "::/0", "::/0"},
		{"ipv6_single", "2001:db8::1/128", "2001:db8::1/128"},
		{"trimmed", " 10.0.0.0/8 ", "10.0.0.0/8"},
		{"bare_address_is_invalid", "10.0.0.0", ""},
		{"length_over_32_is_invalid", "10.0.0.0/33", ""},
		{"length_over_128_is_invalid", "2001:db8::/129", ""},
		{"leading_zero_length_is_invalid", "10.0.0.0/08", ""},
		{"negative_length_is_invalid", "10.0.0.0/-1", ""},
		{"netmask_is_invalid", "10.0.0.0/255.0.0.0", ""},
		{"ipv4_mapped_is_invalid", "::ffff:10.0.0.0/104", ""},
		{"zone_is_invalid", "fe80::%eth0/64", ""},
		{"range_is_invalid", "10.0.0.1-10.0.0.9", ""},
	}},
	{artifacts.KindDomain, artifacts.ErrInvalidDomain, []norm{
		{"lowercase_is_kept", "example.com", "example.com"},
		{"uppercase_is_lowered", "Example.COM", "example.com"},
		{"trailing_dot_is_removed", "example.com.", "example.com"},
		{"subdomain", "c2.evil.example.co.uk", "c2.evil.example.co.uk"},
		{"underscore_is_allowed", "_dmarc.example.com", "_dmarc.example.com"},
		{"hyphen_inside", "my-host.example", "my-host.example"},
		{"digits", "1e100.net", "1e100.net"},
		{"idn_to_punycode", "bücher.example", "xn--bcher-kva.example"},
		{"idn_uppercase_to_punycode", "BÜCHER.example", "xn--bcher-kva.example"},
		{"punycode_uppercase_is_lowered", "XN--BCHER-KVA.example", "xn--bcher-kva.example"},
		{"ideographic_full_stop_is_a_dot", "münchen。de", "xn--mnchen-3ya.de"},
		{"sharp_s_is_kept_non_transitional", "faß.de", "xn--fa-hia.de"},
		{"japanese", "例え.テスト", "xn--r8jz45g.xn--zckzah"},
		{"label_of_63", label63 + ".com", label63 + ".com"},
		{"name_of_253", domain253, domain253},
		{"name_of_254_is_invalid", "a" + domain253, ""},
		{"label_of_64_is_invalid", label63 + "a.com", ""},
		{"single_label_is_invalid", "localhost", ""},
		{"ipv4_is_invalid", "192.0.2.1", ""},
		{"numeric_tld_is_invalid", "example.123", ""},
		{"leading_hyphen_is_invalid", "-evil.example", ""},
		{"trailing_hyphen_is_invalid", "evil-.example", ""},
		{"empty_label_is_invalid", "evil..example", ""},
		{"leading_dot_is_invalid", ".example.com", ""},
		{"two_trailing_dots_is_invalid", "example.com..", ""},
		{"wildcard_is_invalid", "*.example.com", ""},
		{"space_is_invalid", "ex ample.com", ""},
		{"url_is_invalid", "http://example.com", ""},
		{"port_is_invalid", "example.com:443", ""},
		{"email_is_invalid", "a@example.com", ""},
		{"bad_punycode_is_invalid", "xn--zz.example", ""},
		{"zero_width_joiner_is_invalid", "a\u200db.example", ""},
		{"mixed_direction_label_is_invalid", "\u05d0a.example", ""},
		{"hyphens_in_third_and_fourth_place_are_invalid", "ab--c.example", ""},
	}},
	{artifacts.KindURL, artifacts.ErrInvalidURL, []norm{
		{"canonical_is_kept", "https://example.com/path?q=1", "https://example.com/path?q=1"},
		{"scheme_and_host_lowered_fragment_dropped", "HTTPS://Example.COM/Path?Q=1#frag", "https://example.com/Path?Q=1"},
		{"empty_path_becomes_slash", "http://example.com", "http://example.com/"},
		{"query_without_path", "https://example.com?a=b", "https://example.com/?a=b"},
		{"empty_query_dropped", "https://example.com/?", "https://example.com/"},
		{"default_http_port_dropped", "http://example.com:80/x", "http://example.com/x"},
		{"default_https_port_dropped", "https://example.com:443", "https://example.com/"},
		{"default_port_with_leading_zero_dropped", "http://example.com:080/", "http://example.com/"},
		{"other_port_kept", "http://example.com:8080/", "http://example.com:8080/"},
		{"empty_port_dropped", "http://example.com:/x", "http://example.com/x"},
		{"idn_host_to_punycode", "https://bücher.example/straße", "https://xn--bcher-kva.example/stra%C3%9Fe"},
		{"escaped_idn_host_to_punycode", "https://b%C3%BCcher.example/", "https://xn--bcher-kva.example/"},
		{"trailing_dot_of_host_removed", "http://example.com./", "http://example.com/"},
		{"ipv4_host", "http://192.0.2.1/a", "http://192.0.2.1/a"},
		{"ipv6_host_canonical", "http://[2001:DB8:0::1]:8443/", "http://[2001:db8::1]:8443/"},
		{"ipv4_mapped_host_unmapped", "http://[::ffff:192.0.2.1]/", "http://192.0.2.1/"},
		{"single_label_host", "http://wpad/wpad.dat", "http://wpad/wpad.dat"},
		{"underscore_in_host", "http://my_c2.duckdns.example/", "http://my_c2.duckdns.example/"},
		{"space_in_path_escaped", "http://example.com/a b", "http://example.com/a%20b"},
		{"escaped_slash_kept", "http://example.com/a%2Fb", "http://example.com/a%2Fb"},
		{"user_info_kept", "ftp://user:secret@files.example/x", "ftp://user:secret@files.example/x"},
		{"deceptive_user_info_kept", "http://paypal.com@evil.example/login", "http://paypal.com@evil.example/login"},
		{"smb", "smb://fileserver/share", "smb://fileserver/share"},
		{"ldap_log4shell", "ldap://198.51.100.7:1389/Exploit", "ldap://198.51.100.7:1389/Exploit"},
		{"websocket_default_port", "wss://c2.example:443/ws", "wss://c2.example/ws"},
		{"no_scheme_is_invalid", "example.com/x", ""},
		{"scheme_relative_is_invalid", "//example.com/x", ""},
		{"javascript_is_invalid", "javascript:alert(1)", ""},
		{"mailto_is_invalid", "mailto:a@example.com", ""},
		{"file_is_invalid", "file:///etc/passwd", ""},
		{"defanged_scheme_is_invalid", "hxxp://evil.example/", ""},
		{"no_host_is_invalid", "http:/x", ""},
		{"empty_host_is_invalid", "http://", ""},
		{"port_without_host_is_invalid", "http://:80/", ""},
		{"space_in_host_is_invalid", "http://exa mple.com/", ""},
		{"zone_is_invalid", "http://[fe80::1%25eth0]/", ""},
		{"port_zero_is_invalid", "http://example.com:0/", ""},
		{"port_65536_is_invalid", "http://example.com:65536/", ""},
		{"bad_host_label_is_invalid", "http://-evil.example/", ""},
		{"decimal_ip_host_is_invalid", "http://3221225985/", ""},
		{"wildcard_host_is_invalid", "http://*.example.com/", ""},
		{"bad_escape_is_invalid", "http://example.com/%zz", ""},
		{"control_character_is_invalid", "http://example.com/\x7f", ""},
		{"nul_is_invalid", "http://example.com/a\x00b", ""},
		{"too_long_is_invalid", "https://example.com/" + strings.Repeat("a", 8192-19), ""},
	}},
	{artifacts.KindEmail, artifacts.ErrInvalidEmail, []norm{
		{"plain_is_kept", "alice@example.com", "alice@example.com"},
		{"domain_lowered_local_kept", "Alice.Smith@Example.COM", "Alice.Smith@example.com"},
		{"trimmed", " bob+tag@example.com ", "bob+tag@example.com"},
		{"idn_domain_to_punycode", "élodie@bücher.example", "élodie@xn--bcher-kva.example"},
		{"subdomain", "a@mail.example.co.uk", "a@mail.example.co.uk"},
		{"local_of_64", strings.Repeat("a", 64) + "@example.com", strings.Repeat("a", 64) + "@example.com"},
		{"address_of_254", strings.Repeat("a", 64) + "@" + label63 + "." + label63 + "." + strings.Repeat("c", 57) + ".com",
			strings.Repeat("a", 64) + "@" + label63 + "." + label63 + "." + strings.Repeat("c", 57) + ".com"},
		{"address_of_255_is_invalid", strings.Repeat("a", 64) + "@" + label63 + "." + label63 + "." + strings.Repeat("c", 58) + ".com", ""},
		{"local_of_65_is_invalid", strings.Repeat("a", 65) + "@example.com", ""},
		{"display_name_is_invalid", "Alice <alice@example.com>", ""},
		{"angle_brackets_are_invalid", "<alice@example.com>", ""},
		{"quoted_local_part_is_invalid", `"alice smith"@example.com`, ""},
		{"no_at_is_invalid", "alice.example.com", ""},
		{"no_local_part_is_invalid", "@example.com", ""},
		{"no_domain_is_invalid", "alice@", ""},
		{"single_label_domain_is_invalid", "alice@localhost", ""},
		{"domain_literal_is_invalid", "alice@[192.0.2.1]", ""},
		{"two_ats_are_invalid", "a@b@example.com", ""},
		{"bad_domain_label_is_invalid", "a@-b.example", ""},
		{"two_addresses_are_invalid", "a@example.com, b@example.com", ""},
		{"header_injection_is_invalid", "a@example.com\r\nBcc: b@example.com", ""},
		{"nul_is_invalid", "a\x00b@example.com", ""},
	}},
	{artifacts.KindFilename, artifacts.ErrInvalidFilename, []norm{
		{"name_is_kept", "invoice.pdf.exe", "invoice.pdf.exe"},
		{"case_is_kept", "MIMIKATZ.EXE", "MIMIKATZ.EXE"},
		{"trimmed", " evil.dll\n", "evil.dll"},
		{"unicode", "résumé 東京.docx", "résumé 東京.docx"},
		{"right_to_left_override_is_kept", "invoice\u202efdp.exe", "invoice\u202efdp.exe"},
		{"three_dots", "...", "..."},
		{"hidden_file", ".bashrc", ".bashrc"},
		{"inner_space", "my file.txt", "my file.txt"},
		{"of_255_bytes", strings.Repeat("é", 127) + "x", strings.Repeat("é", 127) + "x"},
		{"of_256_bytes_is_invalid", strings.Repeat("é", 128), ""},
		{"slash_is_invalid", "tmp/evil.sh", ""},
		{"backslash_is_invalid", `Temp\evil.exe`, ""},
		{"nul_is_invalid", "evil\x00.exe", ""},
		{"line_break_is_invalid", "evil\n.exe", ""},
		{"c1_control_is_invalid", "evil\u0085.exe", ""},
		{"dot_is_invalid", ".", ""},
		{"dot_dot_is_invalid", "..", ""},
		{"empty_is_invalid", "  ", ""},
	}},
	{artifacts.KindFilePath, artifacts.ErrInvalidFilePath, []norm{
		{"windows_drive_is_kept", `C:\Windows\System32\evil.dll`, `C:\Windows\System32\evil.dll`},
		{"drive_letter_raised_slashes_turned", "c:/users/public/x.exe", `C:\users\public\x.exe`},
		{"drive_root", `D:\`, `D:\`},
		{"unc", `\\fileserver\share\x.exe`, `\\fileserver\share\x.exe`},
		{"unc_with_slashes", "//fileserver/share/x.exe", `\\fileserver\share\x.exe`},
		{"extended_length", `\\?\C:\very\long\path`, `\\?\C:\very\long\path`},
		{"device", `\\.\PhysicalDrive0`, `\\.\PhysicalDrive0`},
		{"environment_variable_raised", `%appdata%\Microsoft\evil.exe`, `%APPDATA%\Microsoft\evil.exe`},
		{"environment_variable_with_parentheses", `%ProgramFiles(x86)%\x\y.dll`, `%PROGRAMFILES(X86)%\x\y.dll`},
		{"environment_variable_alone", "%TEMP%", "%TEMP%"},
		{"posix_is_kept", "/tmp/.X11-unix/.x", "/tmp/.X11-unix/.x"},
		{"posix_case_and_backslash_kept", `/Users/Alice/back\slash`, `/Users/Alice/back\slash`},
		{"posix_root", "/", "/"},
		{"trimmed", " /etc/passwd ", "/etc/passwd"},
		{"right_to_left_override_is_kept", "/tmp/invoice\u202efdp.sh", "/tmp/invoice\u202efdp.sh"},
		{"of_4096_bytes", "/" + strings.Repeat("a", 4095), "/" + strings.Repeat("a", 4095)},
		{"of_4097_bytes_is_invalid", "/" + strings.Repeat("a", 4096), ""},
		{"relative_windows_is_invalid", `Windows\System32\x.dll`, ""},
		{"relative_posix_is_invalid", "tmp/x", ""},
		{"dot_relative_is_invalid", "./x", ""},
		{"home_relative_is_invalid", "~/x", ""},
		{"drive_alone_is_invalid", "C:", ""},
		{"drive_relative_is_invalid", "C:evil.exe", ""},
		{"rooted_without_drive_is_invalid", `\Windows\x.exe`, ""},
		{"three_backslashes_is_invalid", `\\\x`, ""},
		{"empty_variable_is_invalid", `%%\x`, ""},
		{"variable_with_space_is_invalid", `%APP DATA%\x`, ""},
		{"variable_without_separator_is_invalid", `%APPDATA%x`, ""},
		{"unclosed_variable_is_invalid", `%APPDATA\x`, ""},
		{"nul_is_invalid", "/tmp/a\x00b", ""},
		{"line_break_is_invalid", "C:\\a\nb", ""},
		{"filename_alone_is_invalid", "evil.exe", ""},
	}},
	{artifacts.KindRegistryKey, artifacts.ErrInvalidRegistryKey, []norm{
		{"full_hive_is_kept", `HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Run`, `HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Run`},
		{"hklm_is_written_out", `HKLM\Software\Microsoft\Windows\CurrentVersion\Run`, `HKEY_LOCAL_MACHINE\Software\Microsoft\Windows\CurrentVersion\Run`},
		{"lower_case_hive_is_raised", `hkcu\Software\Classes`, `HKEY_CURRENT_USER\Software\Classes`},
		{"mixed_case_full_hive", `Hkey_Current_User\Environment`, `HKEY_CURRENT_USER\Environment`},
		{"hkcr", `HKCR\exefile\shell\open\command`, `HKEY_CLASSES_ROOT\exefile\shell\open\command`},
		{"hku", `HKU\S-1-5-21-1004336348\Software`, `HKEY_USERS\S-1-5-21-1004336348\Software`},
		{"hkcc", `HKCC\System`, `HKEY_CURRENT_CONFIG\System`},
		{"performance_data", "HKEY_PERFORMANCE_DATA", "HKEY_PERFORMANCE_DATA"},
		{"hive_alone", "HKLM", "HKEY_LOCAL_MACHINE"},
		{"trailing_backslash_removed", `HKLM\SYSTEM\CurrentControlSet\Services\evil\`, `HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services\evil`},
		{"regedit_computer_prefix_removed", `Computer\HKEY_LOCAL_MACHINE\SOFTWARE\x`, `HKEY_LOCAL_MACHINE\SOFTWARE\x`},
		{"kernel_machine_form", `\REGISTRY\MACHINE\SOFTWARE\x`, `HKEY_LOCAL_MACHINE\SOFTWARE\x`},
		{"kernel_user_form", `\Registry\User\S-1-5-18\Software`, `HKEY_USERS\S-1-5-18\Software`},
		{"kernel_form_alone", `\REGISTRY\MACHINE`, "HKEY_LOCAL_MACHINE"},
		{"slash_in_key_name_kept", `HKLM\Software\a/b`, `HKEY_LOCAL_MACHINE\Software\a/b`},
		{"spaces_in_key_names_kept", `HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon`, `HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon`},
		{"no_hive_is_invalid", `Software\Microsoft\Windows`, ""},
		{"unknown_hive_is_invalid", `HKXX\Software`, ""},
		{"slash_after_hive_is_invalid", "HKLM/Software", ""},
		{"empty_key_name_is_invalid", `HKLM\\Software`, ""},
		{"unknown_kernel_form_is_invalid", `\REGISTRY\FOO\x`, ""},
		{"nul_is_invalid", "HKLM\\a\x00", ""},
		{"too_long_is_invalid", `HKLM\` + strings.Repeat("k", 4092), ""},
	}},
	{artifacts.KindUserAgent, artifacts.ErrInvalidUserAgent, []norm{
		{"kept", "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"},
		{"trimmed", "  curl/8.5.0\n", "curl/8.5.0"},
		{"of_2048_code_points", strings.Repeat("ü", 2048), strings.Repeat("ü", 2048)},
		{"of_2049_is_invalid", strings.Repeat("u", 2049), ""},
		{"tab_is_invalid", "curl\t8", ""},
		{"line_break_is_invalid", "curl\r\nX-Injected: 1", ""},
		{"empty_is_invalid", "", ""},
	}},
	{artifacts.KindOther, artifacts.ErrInvalidOther, []norm{
		{"mutex_is_kept", `Global\MsWinZonesCacheCounterMutexA`, `Global\MsWinZonesCacheCounterMutexA`},
		{"unicode_is_kept", "Zoë's 東京 beacon", "Zoë's 東京 beacon"},
		{"of_2048", strings.Repeat("x", 2048), strings.Repeat("x", 2048)},
		{"of_2049_is_invalid", strings.Repeat("x", 2049), ""},
		{"line_break_is_invalid", "a\nb", ""},
		{"blank_is_invalid", " \t ", ""},
	}},
}

func TestNormalize(t *testing.T) {
	for _, group := range normalizeCases {
		t.Run(string(group.kind), func(t *testing.T) {
			for _, tc := range group.cases {
				t.Run(tc.name, func(t *testing.T) {
					got, err := artifacts.Normalize(group.kind, tc.in)
					if tc.want == "" {
						if !errors.Is(err, group.err) {
							t.Fatalf("Normalize(%s, %.60q) = %.60q, %v; want %v", group.kind, tc.in, got, err, group.err)
						}
						if got != "" {
							t.Fatalf("Normalize(%s, %.60q) returned %.60q alongside an error", group.kind, tc.in, got)
						}
						return
					}
					if err != nil {
						t.Fatalf("Normalize(%s, %.60q) error = %v", group.kind, tc.in, err)
					}
					if got != tc.want {
						t.Fatalf("Normalize(%s, %.60q) = %.60q, want %.60q", group.kind, tc.in, got, tc.want)
					}
					// The canonical form is a fixed point.
					again, err := artifacts.Normalize(group.kind, got)
					if err != nil || again != got {
						t.Fatalf("Normalize(%s, %.60q) = %.60q, %v; not a fixed point", group.kind, got, again, err)
					}
				})
			}
		})
	}
}

// TestNormalizeCoversEveryKind fails when a kind is added without cases.
func TestNormalizeCoversEveryKind(t *testing.T) {
	covered := map[artifacts.Kind]bool{}
	for _, group := range normalizeCases {
		covered[group.kind] = true
	}
	for _, k := range artifacts.Kinds() {
		if !covered[k] {
			t.Errorf("no Normalize cases for kind %s", k)
		}
	}
}

func TestNormalizeErrors(t *testing.T) {
	for _, k := range artifacts.Kinds() {
		t.Run(string(k)+"/invalid_utf8", func(t *testing.T) {
			_, err := artifacts.Normalize(k, "a\xffb")
			var de *domain.Error
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not a *domain.Error", err)
			}
			if de.Kind != domain.KindInvalid || de.Code != "invalid_"+string(k) {
				t.Fatalf("error = %+v, want kind invalid and code invalid_%s", de, k)
			}
			if de.Message == "" {
				t.Fatal("empty message")
			}
		})
		t.Run(string(k)+"/empty", func(t *testing.T) {
			_, err := artifacts.Normalize(k, " ")
			var de *domain.Error
			if !errors.As(err, &de) || de.Code != "invalid_"+string(k) {
				t.Fatalf("error = %v, want code invalid_%s", err, k)
			}
		})
	}
	if _, err := artifacts.Normalize("hash", "d41d8cd98f00b204e9800998ecf8427e"); !errors.Is(err, artifacts.ErrKindInvalid) {
		t.Errorf("unknown kind error = %v, want %v", err, artifacts.ErrKindInvalid)
	}
	if got, err := artifacts.Normalize(" SHA256 ", strings.Repeat("A", 64)); err != nil || got != strings.Repeat("a", 64) {
		t.Errorf("kind in upper case: %q, %v", got, err)
	}
	// Messages name the expected form and, where it helps, the right kind.
	for _, tc := range []struct {
		kind artifacts.Kind
		in   string
		says string
	}{
		{artifacts.KindSHA256, "abc", "64 hexadecimal digits"},
		{artifacts.KindIPv4, "2001:db8::1", "kind ipv6"},
		{artifacts.KindIPv4, "::ffff:192.0.2.1", "192.0.2.1"},
		{artifacts.KindIPv6, "192.0.2.1", "kind ipv4"},
		{artifacts.KindIPv6, "::ffff:192.0.2.1", "kind ipv4: 192.0.2.1"},
		{artifacts.KindIPv6, "fe80::1%eth0", "zone"},
		{artifacts.KindURL, "example.com", "scheme"},
		{artifacts.KindURL, "gopher://example.com/", `"gopher"`},
		{artifacts.KindFilename, "a/b", "file_path"},
		{artifacts.KindDomain, "localhost", "example.com"},
	} {
		_, err := artifacts.Normalize(tc.kind, tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("Normalize(%s, %q) error %q does not say %q", tc.kind, tc.in, err, tc.says)
		}
	}
}

func TestKinds(t *testing.T) {
	want := []artifacts.Kind{"md5", "sha1", "sha256", "ipv4", "ipv6", "cidr", "domain", "url", "email",
		"filename", "file_path", "registry_key", "user_agent", "other"}
	got := artifacts.Kinds()
	if len(got) != len(want) {
		t.Fatalf("Kinds() = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] || !got[i].Valid() {
			t.Fatalf("Kinds() = %v, want %v", got, want)
		}
	}
	got[0] = "changed"
	if artifacts.Kinds()[0] != artifacts.KindMD5 {
		t.Error("Kinds returns shared storage")
	}
	if k, err := artifacts.ParseKind(" File_Path "); k != artifacts.KindFilePath || err != nil {
		t.Errorf("ParseKind = %q, %v", k, err)
	}
	if _, err := artifacts.ParseKind("ip"); !errors.Is(err, artifacts.ErrKindInvalid) {
		t.Errorf("ParseKind(ip) error = %v", err)
	}
}
