package privacycenter

import (
	"net/http"
	"strings"
	"time"
)

// Languages the customer pages are written in; the first is the default.
var Languages = []string{"en", "vi"}

// langCookie keeps the language a customer picked.
const langCookie = "pp_lang"

// pickLang chooses the page's language: ?lang=, then the cookie, then
// Accept-Language, then English.
func pickLang(r *http.Request) (lang string, chosen bool) {
	if l := r.URL.Query().Get("lang"); known(l) {
		return l, true
	}
	if c, err := r.Cookie(langCookie); err == nil && known(c.Value) {
		return c.Value, false
	}
	for _, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		base, _, _ := strings.Cut(strings.ToLower(tag), "-")
		if known(base) {
			return base, false
		}
	}
	return Languages[0], false
}

func known(l string) bool {
	for _, k := range Languages {
		if l == k {
			return true
		}
	}
	return false
}

// msg returns the text of key in lang (English when lang lacks it, the
// key itself when both do: TestCataloguesAreComplete keeps that from
// happening).
func msg(lang, key string) string {
	if s, ok := catalogue[lang][key]; ok {
		return s
	}
	if s, ok := catalogue["en"][key]; ok {
		return s
	}
	return key
}

// formatTime writes t for people, in UTC.
func formatTime(lang string, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	if lang == "vi" {
		return t.UTC().Format("02/01/2006 15:04") + " UTC"
	}
	return t.UTC().Format("2 Jan 2006 15:04") + " UTC"
}

// catalogue holds every text of the customer pages. The keys "purpose.*",
// "field.*", "action.*", "gen.*", "kind.*", "status.*", "source.*" and
// "state.*" are generated from the policy's and the schemas' names;
// TestCataloguesAreComplete checks that every name of the checked-in
// policy has a text in every language.
var catalogue = map[string]map[string]string{
	"en": {
		"title":                "Your privacy",
		"skip":                 "Skip to the content",
		"language":             "Language",
		"logout":               "Sign out",
		"intro":                "Here you see what we do with your data for each purpose, in plain words, and you change your choices at any time. A change takes effect within seconds.",
		"gpc_on":               "Your browser sends the Global Privacy Control signal. We recorded it: we do not sell or share your data, and marketing and sharing stay off while the signal is on.",
		"gpc_recorded":         "Your browser's Global Privacy Control signal was recorded.",
		"choices":              "Your choices, purpose by purpose",
		"current":              "Your choice",
		"since":                "since",
		"on":                   "On",
		"off":                  "Off",
		"press_withdraw":       "Press to withdraw your consent.",
		"press_grant":          "Press to give your consent.",
		"fields_used":          "What this purpose uses and how",
		"field":                "Data",
		"how":                  "How it is used",
		"not_used":             "Never used for this purpose",
		"legal_basis":          "Legal basis",
		"retention":            "Kept for",
		"days":                 "days",
		"explicit":             "only with your explicit consent",
		"basis.consent":        "your consent",
		"history":              "History of your choices",
		"when":                 "When",
		"purpose":              "Purpose",
		"choice":               "Choice",
		"how_made":             "How",
		"all_purposes":         "All purposes",
		"no_history":           "No choice recorded yet.",
		"rights":               "Your data and your requests",
		"export_intro":         "Download a copy of the data we hold about you (a JSON file you can take elsewhere).",
		"export_button":        "Request a copy of my data",
		"erase_intro":          "Ask us to erase your data. This cannot be undone: every purpose stops, and your data is deleted from our systems by the deadline the law sets.",
		"erase_confirm":        "I understand that erasure cannot be undone",
		"erase_button":         "Erase my data",
		"requests":             "Your requests",
		"no_requests":          "You have made no request.",
		"kind":                 "Request",
		"status":               "Status",
		"received":             "Received",
		"deadline":             "Deadline",
		"days_left":            "Days left",
		"download":             "Download",
		"download_file":        "Download my data",
		"export_expired":       "expired",
		"done_granted":         "Your consent was recorded.",
		"done_withdrawn":       "Your consent was withdrawn. No new data of yours is used for this purpose from now on.",
		"done_export":          "Your request for a copy of your data was received. Its status is below.",
		"done_erasure":         "Your erasure request was received. Its status and deadline are below.",
		"problem_retry":        "We could not save that just now. Nothing was changed; please try again.",
		"problem_erased":       "Your data was erased; there is nothing more to change.",
		"problem_confirm":      "Please tick the box to confirm the erasure.",
		"refused_title":        "This link cannot be used",
		"refused_missing":      "Open this page from the link in your account: it identifies you securely.",
		"refused_expired":      "The link has expired. Go back to your account and open the privacy page again.",
		"refused_invalid":      "The link is not valid. Go back to your account and open the privacy page again.",
		"refused_flood":        "Too many attempts. Please wait a minute and try again.",
		"signed_out":           "You are signed out.",
		"state.granted":        "On",
		"state.withdrawn":      "Off",
		"state.denied":         "Off",
		"state.unset":          "Not chosen yet (off)",
		"kind.access":          "Copy of my data",
		"kind.portability":     "Copy of my data (portable)",
		"kind.erasure":         "Erasure",
		"status.received":      "Received",
		"status.verified":      "Accepted",
		"status.in_progress":   "In progress",
		"status.extended":      "In progress (deadline extended)",
		"status.done":          "Done",
		"status.refused":       "Refused",
		"source.web_form":      "on this page or a form",
		"source.mobile_app":    "in the app",
		"source.support_agent": "by our support team",
		"source.gpc_signal":    "your browser's privacy signal",
		"source.import":        "imported from an earlier system",
		"gpc.on":               "Privacy signal on",
		"open_intro":           "Your account sent you here to see and change what we do with your data.",
		"open_button":          "Open my privacy settings",
		"refused_used":         "This link was used already. Go back to your account and open the privacy page again.",
		"effect_gpc":           "Not used now: your browser's privacy signal keeps it off, whatever you choose here.",
		"effect_default":       "Used now: where you live the law allows this unless you object. Switch it off to object.",
		"via_tcf":              "your choices in a consent banner (IAB TCF)",
		"via_gpp":              "your choices in a consent banner (IAB GPP)",

		"purpose.analytics":           "Analytics",
		"purpose.personalization":     "Personalisation",
		"purpose.ai_training":         "Training AI models",
		"purpose.marketing":           "Marketing",
		"purpose.third_party_sharing": "Sharing with partners",

		"action.keep":         "used as it is",
		"action.pseudonymize": "replaced by a code that does not reveal it (a pseudonym, different for each purpose)",
		"action.mask":         "partly hidden",
		"action.redact":       "used with e-mail addresses, phone numbers, card numbers and IP addresses removed",
		"action.encrypt":      "encrypted with a key of yours that is destroyed when you ask us to erase your data",
		"action.tokenize":     "replaced by a token that only authorised systems can turn back",
		"action.generalize":   "made less precise",

		"gen.hour":      "made less precise: only the hour is kept",
		"gen.day":       "made less precise: only the day is kept",
		"gen.month":     "made less precise: only the month is kept",
		"gen.year":      "made less precise: only the year is kept",
		"gen.age_band":  "made less precise: only your age band is kept",
		"gen.prefix":    "made less precise: only its first characters are kept",
		"gen.ip_prefix": "made less precise: only the network part is kept",
		"gen.geo_cell":  "made less precise: only an area of a few kilometres is kept",
		"gen.template":  "made less precise: only the kind of page is kept, not what was on it",

		"field.event_id":            "Event identifier",
		"field.subject_id":          "Your customer identifier",
		"field.event_type":          "What you did (the kind of event)",
		"field.event_time":          "When it happened",
		"field.jurisdiction":        "Your region (which law applies)",
		"field.gpc":                 "Your browser's privacy signal",
		"field.name":                "Your name",
		"field.email":               "Your e-mail address",
		"field.phone":               "Your phone number",
		"field.address.street":      "Your street address",
		"field.address.city":        "Your city",
		"field.address.postal_code": "Your postal code",
		"field.address.country":     "Your country",
		"field.ip_address":          "Your IP address",
		"field.device_id":           "Your device's identifier",
		"field.user_agent":          "Your browser and device type",
		"field.location":            "Your location",
		"field.birth_date":          "Your date of birth",
		"field.gender":              "Your gender",
		"field.page_url":            "The page you visited",
		"field.order_amount":        "The amount of your order",
		"field.currency":            "The currency of your order",
		"field.card_number":         "Your payment card number",
		"field.message":             "Messages you wrote to us",
	},
	"vi": {
		"title":                "Quyền riêng tư của bạn",
		"skip":                 "Chuyển đến nội dung",
		"language":             "Ngôn ngữ",
		"logout":               "Đăng xuất",
		"intro":                "Tại đây bạn xem chúng tôi làm gì với dữ liệu của bạn cho từng mục đích, bằng lời lẽ đơn giản, và thay đổi lựa chọn của mình bất cứ lúc nào. Thay đổi có hiệu lực trong vài giây.",
		"gpc_on":               "Trình duyệt của bạn gửi tín hiệu Global Privacy Control. Chúng tôi đã ghi nhận: chúng tôi không bán hay chia sẻ dữ liệu của bạn, và tiếp thị cùng chia sẻ luôn tắt khi tín hiệu còn bật.",
		"gpc_recorded":         "Tín hiệu Global Privacy Control của trình duyệt đã được ghi nhận.",
		"choices":              "Lựa chọn của bạn theo từng mục đích",
		"current":              "Lựa chọn của bạn",
		"since":                "từ",
		"on":                   "Bật",
		"off":                  "Tắt",
		"press_withdraw":       "Nhấn để rút lại sự đồng ý.",
		"press_grant":          "Nhấn để đồng ý.",
		"fields_used":          "Mục đích này dùng dữ liệu gì và như thế nào",
		"field":                "Dữ liệu",
		"how":                  "Cách sử dụng",
		"not_used":             "Không bao giờ dùng cho mục đích này",
		"legal_basis":          "Cơ sở pháp lý",
		"retention":            "Lưu giữ trong",
		"days":                 "ngày",
		"explicit":             "chỉ khi bạn đồng ý rõ ràng",
		"basis.consent":        "sự đồng ý của bạn",
		"history":              "Lịch sử lựa chọn của bạn",
		"when":                 "Thời điểm",
		"purpose":              "Mục đích",
		"choice":               "Lựa chọn",
		"how_made":             "Cách thực hiện",
		"all_purposes":         "Mọi mục đích",
		"no_history":           "Chưa có lựa chọn nào được ghi nhận.",
		"rights":               "Dữ liệu và yêu cầu của bạn",
		"export_intro":         "Tải về bản sao dữ liệu chúng tôi lưu về bạn (một tệp JSON bạn có thể mang đi nơi khác).",
		"export_button":        "Yêu cầu bản sao dữ liệu của tôi",
		"erase_intro":          "Yêu cầu chúng tôi xoá dữ liệu của bạn. Việc này không thể hoàn tác: mọi mục đích đều dừng, và dữ liệu của bạn bị xoá khỏi hệ thống trước thời hạn luật định.",
		"erase_confirm":        "Tôi hiểu rằng việc xoá không thể hoàn tác",
		"erase_button":         "Xoá dữ liệu của tôi",
		"requests":             "Các yêu cầu của bạn",
		"no_requests":          "Bạn chưa gửi yêu cầu nào.",
		"kind":                 "Yêu cầu",
		"status":               "Trạng thái",
		"received":             "Đã nhận",
		"deadline":             "Thời hạn",
		"days_left":            "Số ngày còn lại",
		"download":             "Tải về",
		"download_file":        "Tải dữ liệu của tôi",
		"export_expired":       "đã hết hạn",
		"done_granted":         "Sự đồng ý của bạn đã được ghi nhận.",
		"done_withdrawn":       "Bạn đã rút lại sự đồng ý. Từ bây giờ, không dữ liệu mới nào của bạn được dùng cho mục đích này.",
		"done_export":          "Yêu cầu bản sao dữ liệu của bạn đã được tiếp nhận. Trạng thái ở bên dưới.",
		"done_erasure":         "Yêu cầu xoá dữ liệu của bạn đã được tiếp nhận. Trạng thái và thời hạn ở bên dưới.",
		"problem_retry":        "Hiện chưa lưu được. Không có gì thay đổi; vui lòng thử lại.",
		"problem_erased":       "Dữ liệu của bạn đã bị xoá; không còn gì để thay đổi.",
		"problem_confirm":      "Vui lòng đánh dấu vào ô để xác nhận việc xoá.",
		"refused_title":        "Không thể dùng liên kết này",
		"refused_missing":      "Hãy mở trang này từ liên kết trong tài khoản của bạn: liên kết đó xác định bạn một cách an toàn.",
		"refused_expired":      "Liên kết đã hết hạn. Hãy quay lại tài khoản và mở lại trang quyền riêng tư.",
		"refused_invalid":      "Liên kết không hợp lệ. Hãy quay lại tài khoản và mở lại trang quyền riêng tư.",
		"refused_flood":        "Quá nhiều lần thử. Vui lòng đợi một phút rồi thử lại.",
		"signed_out":           "Bạn đã đăng xuất.",
		"state.granted":        "Bật",
		"state.withdrawn":      "Tắt",
		"state.denied":         "Tắt",
		"state.unset":          "Chưa chọn (tắt)",
		"kind.access":          "Bản sao dữ liệu của tôi",
		"kind.portability":     "Bản sao dữ liệu của tôi (để chuyển đi)",
		"kind.erasure":         "Xoá dữ liệu",
		"status.received":      "Đã nhận",
		"status.verified":      "Đã chấp nhận",
		"status.in_progress":   "Đang xử lý",
		"status.extended":      "Đang xử lý (đã gia hạn)",
		"status.done":          "Hoàn tất",
		"status.refused":       "Bị từ chối",
		"source.web_form":      "trên trang này hoặc một biểu mẫu",
		"source.mobile_app":    "trong ứng dụng",
		"source.support_agent": "bởi đội hỗ trợ của chúng tôi",
		"source.gpc_signal":    "tín hiệu quyền riêng tư của trình duyệt",
		"source.import":        "chuyển từ hệ thống trước",
		"gpc.on":               "Tín hiệu quyền riêng tư bật",
		"open_intro":           "Tài khoản của bạn đưa bạn đến đây để xem và thay đổi cách chúng tôi dùng dữ liệu của bạn.",
		"open_button":          "Mở cài đặt quyền riêng tư của tôi",
		"refused_used":         "Liên kết này đã được dùng. Hãy quay lại tài khoản và mở lại trang quyền riêng tư.",
		"effect_gpc":           "Hiện không được dùng: tín hiệu quyền riêng tư của trình duyệt giữ mục này ở trạng thái tắt, dù bạn chọn gì ở đây.",
		"effect_default":       "Hiện đang được dùng: nơi bạn sống, luật cho phép việc này trừ khi bạn phản đối. Tắt để phản đối.",
		"via_tcf":              "lựa chọn của bạn trong bảng đồng ý cookie (IAB TCF)",
		"via_gpp":              "lựa chọn của bạn trong bảng đồng ý cookie (IAB GPP)",

		"purpose.analytics":                "Phân tích",
		"purpose.personalization":          "Cá nhân hoá",
		"purpose.ai_training":              "Huấn luyện mô hình AI",
		"purpose.marketing":                "Tiếp thị",
		"purpose.third_party_sharing":      "Chia sẻ với đối tác",
		"purpose_desc.analytics":           "Phân tích sản phẩm và kinh doanh dựa trên hành vi tổng hợp.",
		"purpose_desc.personalization":     "Gợi ý và nội dung cá nhân hoá trong các sản phẩm của chính chúng tôi.",
		"purpose_desc.ai_training":         "Huấn luyện và đánh giá các mô hình học máy.",
		"purpose_desc.marketing":           "Chiến dịch tiếp thị trực tiếp qua e-mail.",
		"purpose_desc.third_party_sharing": "Chia sẻ với các đối tác được nêu tên cho các ưu đãi chung.",

		"action.keep":         "dùng nguyên dạng",
		"action.pseudonymize": "thay bằng một mã không tiết lộ giá trị (bí danh, khác nhau cho từng mục đích)",
		"action.mask":         "che một phần",
		"action.redact":       "dùng sau khi xoá địa chỉ e-mail, số điện thoại, số thẻ và địa chỉ IP",
		"action.encrypt":      "mã hoá bằng khoá riêng của bạn, khoá này bị huỷ khi bạn yêu cầu xoá dữ liệu",
		"action.tokenize":     "thay bằng mã mà chỉ hệ thống được phép mới giải ngược được",
		"action.generalize":   "làm giảm độ chính xác",

		"gen.hour":      "làm giảm độ chính xác: chỉ giữ giờ",
		"gen.day":       "làm giảm độ chính xác: chỉ giữ ngày",
		"gen.month":     "làm giảm độ chính xác: chỉ giữ tháng",
		"gen.year":      "làm giảm độ chính xác: chỉ giữ năm",
		"gen.age_band":  "làm giảm độ chính xác: chỉ giữ nhóm tuổi",
		"gen.prefix":    "làm giảm độ chính xác: chỉ giữ vài ký tự đầu",
		"gen.ip_prefix": "làm giảm độ chính xác: chỉ giữ phần mạng",
		"gen.geo_cell":  "làm giảm độ chính xác: chỉ giữ một khu vực rộng vài ki-lô-mét",
		"gen.template":  "làm giảm độ chính xác: chỉ giữ loại trang, không giữ nội dung",

		"field.event_id":            "Mã sự kiện",
		"field.subject_id":          "Mã khách hàng của bạn",
		"field.event_type":          "Bạn đã làm gì (loại sự kiện)",
		"field.event_time":          "Thời điểm xảy ra",
		"field.jurisdiction":        "Khu vực của bạn (luật nào áp dụng)",
		"field.gpc":                 "Tín hiệu quyền riêng tư của trình duyệt",
		"field.name":                "Họ tên của bạn",
		"field.email":               "Địa chỉ e-mail của bạn",
		"field.phone":               "Số điện thoại của bạn",
		"field.address.street":      "Địa chỉ đường phố của bạn",
		"field.address.city":        "Thành phố của bạn",
		"field.address.postal_code": "Mã bưu chính của bạn",
		"field.address.country":     "Quốc gia của bạn",
		"field.ip_address":          "Địa chỉ IP của bạn",
		"field.device_id":           "Mã thiết bị của bạn",
		"field.user_agent":          "Loại trình duyệt và thiết bị của bạn",
		"field.location":            "Vị trí của bạn",
		"field.birth_date":          "Ngày sinh của bạn",
		"field.gender":              "Giới tính của bạn",
		"field.page_url":            "Trang bạn đã xem",
		"field.order_amount":        "Giá trị đơn hàng của bạn",
		"field.currency":            "Đơn vị tiền tệ của đơn hàng",
		"field.card_number":         "Số thẻ thanh toán của bạn",
		"field.message":             "Tin nhắn bạn gửi cho chúng tôi",
	},
}
