-- Burned-in text per batch and modality: frames the glyph screen looked at and flagged, frames the learned net
-- read whatever the screen said (and where it found text the screen missed), frames and instances redacted.
select i.batch, i.modality, count(*) as instances,
       sum(a.frames_screened)::bigint as frames_screened, sum(a.frames_flagged)::bigint as frames_flagged,
       sum(a.frames_net_read)::bigint as frames_net_read, sum(a.net_hits)::bigint as net_hits,
       sum(a.frames_redacted)::bigint as frames_redacted,
       count(*) filter (where a.burned_in = 'redacted') as instances_redacted
from {{ ref('stg_deid_instances') }} i
join {{ ref('stg_deid_audit') }} a using (batch, sop_instance_uid)
group by i.batch, i.modality
