from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChannelSpec(_message.Message):
    __slots__ = ("kind", "snr_db", "k_factor", "tx_antennas", "rx_antennas", "coherence_symbols", "seed", "mimo_scheme", "csi", "pilots", "tdl_model", "delay_spread_ns", "speed_mps", "users", "multiuser_detector")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SNR_DB_FIELD_NUMBER: _ClassVar[int]
    K_FACTOR_FIELD_NUMBER: _ClassVar[int]
    TX_ANTENNAS_FIELD_NUMBER: _ClassVar[int]
    RX_ANTENNAS_FIELD_NUMBER: _ClassVar[int]
    COHERENCE_SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MIMO_SCHEME_FIELD_NUMBER: _ClassVar[int]
    CSI_FIELD_NUMBER: _ClassVar[int]
    PILOTS_FIELD_NUMBER: _ClassVar[int]
    TDL_MODEL_FIELD_NUMBER: _ClassVar[int]
    DELAY_SPREAD_NS_FIELD_NUMBER: _ClassVar[int]
    SPEED_MPS_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    MULTIUSER_DETECTOR_FIELD_NUMBER: _ClassVar[int]
    kind: str
    snr_db: float
    k_factor: float
    tx_antennas: int
    rx_antennas: int
    coherence_symbols: int
    seed: int
    mimo_scheme: str
    csi: str
    pilots: int
    tdl_model: str
    delay_spread_ns: float
    speed_mps: float
    users: int
    multiuser_detector: str
    def __init__(self, kind: _Optional[str] = ..., snr_db: _Optional[float] = ..., k_factor: _Optional[float] = ..., tx_antennas: _Optional[int] = ..., rx_antennas: _Optional[int] = ..., coherence_symbols: _Optional[int] = ..., seed: _Optional[int] = ..., mimo_scheme: _Optional[str] = ..., csi: _Optional[str] = ..., pilots: _Optional[int] = ..., tdl_model: _Optional[str] = ..., delay_spread_ns: _Optional[float] = ..., speed_mps: _Optional[float] = ..., users: _Optional[int] = ..., multiuser_detector: _Optional[str] = ...) -> None: ...

class ImageRequest(_message.Message):
    __slots__ = ("request_id", "user_id", "image", "channel", "target_cbr", "mode", "deadline_ms", "use_adapter", "skip_quality")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TARGET_CBR_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    USE_ADAPTER_FIELD_NUMBER: _ClassVar[int]
    SKIP_QUALITY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    user_id: str
    image: bytes
    channel: ChannelSpec
    target_cbr: float
    mode: str
    deadline_ms: float
    use_adapter: bool
    skip_quality: bool
    def __init__(self, request_id: _Optional[str] = ..., user_id: _Optional[str] = ..., image: _Optional[bytes] = ..., channel: _Optional[_Union[ChannelSpec, _Mapping]] = ..., target_cbr: _Optional[float] = ..., mode: _Optional[str] = ..., deadline_ms: _Optional[float] = ..., use_adapter: _Optional[bool] = ..., skip_quality: _Optional[bool] = ...) -> None: ...

class SymbolFrame(_message.Message):
    __slots__ = ("request_id", "user_id", "channel", "mode", "model", "symbols", "num_symbols", "token_lengths", "power_scale", "grid_height", "grid_width", "image_height", "image_width", "target_cbr", "achieved_cbr", "latency_ms", "deadline_unix_ms", "side_channel_symbols", "adapter_version")
    class LatencyMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    NUM_SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_LENGTHS_FIELD_NUMBER: _ClassVar[int]
    POWER_SCALE_FIELD_NUMBER: _ClassVar[int]
    GRID_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    GRID_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    TARGET_CBR_FIELD_NUMBER: _ClassVar[int]
    ACHIEVED_CBR_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    SIDE_CHANNEL_SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    user_id: str
    channel: ChannelSpec
    mode: str
    model: str
    symbols: bytes
    num_symbols: int
    token_lengths: _containers.RepeatedScalarFieldContainer[int]
    power_scale: float
    grid_height: int
    grid_width: int
    image_height: int
    image_width: int
    target_cbr: float
    achieved_cbr: float
    latency_ms: _containers.ScalarMap[str, float]
    deadline_unix_ms: float
    side_channel_symbols: int
    adapter_version: int
    def __init__(self, request_id: _Optional[str] = ..., user_id: _Optional[str] = ..., channel: _Optional[_Union[ChannelSpec, _Mapping]] = ..., mode: _Optional[str] = ..., model: _Optional[str] = ..., symbols: _Optional[bytes] = ..., num_symbols: _Optional[int] = ..., token_lengths: _Optional[_Iterable[int]] = ..., power_scale: _Optional[float] = ..., grid_height: _Optional[int] = ..., grid_width: _Optional[int] = ..., image_height: _Optional[int] = ..., image_width: _Optional[int] = ..., target_cbr: _Optional[float] = ..., achieved_cbr: _Optional[float] = ..., latency_ms: _Optional[_Mapping[str, float]] = ..., deadline_unix_ms: _Optional[float] = ..., side_channel_symbols: _Optional[int] = ..., adapter_version: _Optional[int] = ...) -> None: ...

class ChannelState(_message.Message):
    __slots__ = ("kind", "snr_db", "noise_variance", "coherence_symbols", "block_gains", "num_blocks", "channel_uses", "received_pilots", "pilots_per_block", "tx_antennas", "rx_antennas", "channel_matrices", "combiners", "singular_values", "feedback_bits", "slot_request_ids", "slot_user")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SNR_DB_FIELD_NUMBER: _ClassVar[int]
    NOISE_VARIANCE_FIELD_NUMBER: _ClassVar[int]
    COHERENCE_SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_GAINS_FIELD_NUMBER: _ClassVar[int]
    NUM_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_USES_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_PILOTS_FIELD_NUMBER: _ClassVar[int]
    PILOTS_PER_BLOCK_FIELD_NUMBER: _ClassVar[int]
    TX_ANTENNAS_FIELD_NUMBER: _ClassVar[int]
    RX_ANTENNAS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_MATRICES_FIELD_NUMBER: _ClassVar[int]
    COMBINERS_FIELD_NUMBER: _ClassVar[int]
    SINGULAR_VALUES_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_BITS_FIELD_NUMBER: _ClassVar[int]
    SLOT_REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    SLOT_USER_FIELD_NUMBER: _ClassVar[int]
    kind: str
    snr_db: float
    noise_variance: float
    coherence_symbols: int
    block_gains: bytes
    num_blocks: int
    channel_uses: int
    received_pilots: bytes
    pilots_per_block: int
    tx_antennas: int
    rx_antennas: int
    channel_matrices: bytes
    combiners: bytes
    singular_values: bytes
    feedback_bits: int
    slot_request_ids: _containers.RepeatedScalarFieldContainer[str]
    slot_user: int
    def __init__(self, kind: _Optional[str] = ..., snr_db: _Optional[float] = ..., noise_variance: _Optional[float] = ..., coherence_symbols: _Optional[int] = ..., block_gains: _Optional[bytes] = ..., num_blocks: _Optional[int] = ..., channel_uses: _Optional[int] = ..., received_pilots: _Optional[bytes] = ..., pilots_per_block: _Optional[int] = ..., tx_antennas: _Optional[int] = ..., rx_antennas: _Optional[int] = ..., channel_matrices: _Optional[bytes] = ..., combiners: _Optional[bytes] = ..., singular_values: _Optional[bytes] = ..., feedback_bits: _Optional[int] = ..., slot_request_ids: _Optional[_Iterable[str]] = ..., slot_user: _Optional[int] = ...) -> None: ...

class ReceivedFrame(_message.Message):
    __slots__ = ("frame", "state")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    frame: SymbolFrame
    state: ChannelState
    def __init__(self, frame: _Optional[_Union[SymbolFrame, _Mapping]] = ..., state: _Optional[_Union[ChannelState, _Mapping]] = ...) -> None: ...

class Status(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class Quality(_message.Message):
    __slots__ = ("psnr_db", "ms_ssim")
    PSNR_DB_FIELD_NUMBER: _ClassVar[int]
    MS_SSIM_FIELD_NUMBER: _ClassVar[int]
    psnr_db: float
    ms_ssim: float
    def __init__(self, psnr_db: _Optional[float] = ..., ms_ssim: _Optional[float] = ...) -> None: ...

class ImageResult(_message.Message):
    __slots__ = ("request_id", "user_id", "status", "image", "width", "height", "target_cbr", "achieved_cbr", "num_symbols", "side_information_bytes", "mode", "nfe", "channel", "quality", "latency_ms", "batch_size", "channel_uses", "feedback_bits", "slot_users")
    class LatencyMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    TARGET_CBR_FIELD_NUMBER: _ClassVar[int]
    ACHIEVED_CBR_FIELD_NUMBER: _ClassVar[int]
    NUM_SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    SIDE_INFORMATION_BYTES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    NFE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_USES_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_BITS_FIELD_NUMBER: _ClassVar[int]
    SLOT_USERS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    user_id: str
    status: Status
    image: bytes
    width: int
    height: int
    target_cbr: float
    achieved_cbr: float
    num_symbols: int
    side_information_bytes: int
    mode: str
    nfe: int
    channel: ChannelSpec
    quality: Quality
    latency_ms: _containers.ScalarMap[str, float]
    batch_size: int
    channel_uses: int
    feedback_bits: int
    slot_users: int
    def __init__(self, request_id: _Optional[str] = ..., user_id: _Optional[str] = ..., status: _Optional[_Union[Status, _Mapping]] = ..., image: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., target_cbr: _Optional[float] = ..., achieved_cbr: _Optional[float] = ..., num_symbols: _Optional[int] = ..., side_information_bytes: _Optional[int] = ..., mode: _Optional[str] = ..., nfe: _Optional[int] = ..., channel: _Optional[_Union[ChannelSpec, _Mapping]] = ..., quality: _Optional[_Union[Quality, _Mapping]] = ..., latency_ms: _Optional[_Mapping[str, float]] = ..., batch_size: _Optional[int] = ..., channel_uses: _Optional[int] = ..., feedback_bits: _Optional[int] = ..., slot_users: _Optional[int] = ...) -> None: ...

class AdaptRequest(_message.Message):
    __slots__ = ("user_id", "images", "snr_min_db", "snr_max_db", "steps")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    SNR_MIN_DB_FIELD_NUMBER: _ClassVar[int]
    SNR_MAX_DB_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    images: _containers.RepeatedScalarFieldContainer[bytes]
    snr_min_db: float
    snr_max_db: float
    steps: int
    def __init__(self, user_id: _Optional[str] = ..., images: _Optional[_Iterable[bytes]] = ..., snr_min_db: _Optional[float] = ..., snr_max_db: _Optional[float] = ..., steps: _Optional[int] = ...) -> None: ...

class AdaptResult(_message.Message):
    __slots__ = ("user_id", "version", "parameters", "parameter_bytes", "psnr_before_db", "psnr_after_db", "latency_ms", "receivers")
    class LatencyMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_BYTES_FIELD_NUMBER: _ClassVar[int]
    PSNR_BEFORE_DB_FIELD_NUMBER: _ClassVar[int]
    PSNR_AFTER_DB_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    RECEIVERS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    version: int
    parameters: int
    parameter_bytes: int
    psnr_before_db: float
    psnr_after_db: float
    latency_ms: _containers.ScalarMap[str, float]
    receivers: int
    def __init__(self, user_id: _Optional[str] = ..., version: _Optional[int] = ..., parameters: _Optional[int] = ..., parameter_bytes: _Optional[int] = ..., psnr_before_db: _Optional[float] = ..., psnr_after_db: _Optional[float] = ..., latency_ms: _Optional[_Mapping[str, float]] = ..., receivers: _Optional[int] = ...) -> None: ...

class AdapterUpdate(_message.Message):
    __slots__ = ("user_id", "version", "model", "parameters")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    version: int
    model: str
    parameters: bytes
    def __init__(self, user_id: _Optional[str] = ..., version: _Optional[int] = ..., model: _Optional[str] = ..., parameters: _Optional[bytes] = ...) -> None: ...

class AdapterAck(_message.Message):
    __slots__ = ("user_id", "version", "cached_users")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CACHED_USERS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    version: int
    cached_users: int
    def __init__(self, user_id: _Optional[str] = ..., version: _Optional[int] = ..., cached_users: _Optional[int] = ...) -> None: ...
