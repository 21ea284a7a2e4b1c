"""Video input: decoding files and frame folders, temporal sampling and transforms."""

from .decode import PyAVReader, open_video, plan_reads, read_info
from .frames import DEFAULT_FOLDER_FPS, FrameFolderReader, is_frame_folder
from .info import VIDEO_EXTENSIONS, VideoInfo, VideoReader
from .sampling import (ClipSampler, Views, dense_indices, enumerate_views, fps_dense_indices, parse_sampling,
                       parse_views, segment_indices)
from .transforms import (CLIP_MEAN, CLIP_STD, build_eval_transform, build_train_transform, center_crop,
                         normalize, resize_short, three_crops)
